from callback_fanout.cli import main

raise SystemExit(main())
