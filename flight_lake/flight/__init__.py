"""The Arrow Flight front end: commands, error translation and the server."""
