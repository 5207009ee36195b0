"""SQLite storage: connections, migrations, and the small stores built on them."""
