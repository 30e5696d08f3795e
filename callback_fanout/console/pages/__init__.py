"""One module per page: its routes (``routes``) and what it renders."""
