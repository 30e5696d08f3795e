"""What every role shares: settings, errors, topology, the event model and its parser."""
