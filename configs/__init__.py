"""YAML presets (installed as genossa.configs); load them with genossa.config.load_config."""
