"""A board's configuration: the TOML file format (``file``) and ``cellguard config``
(``command``)."""
