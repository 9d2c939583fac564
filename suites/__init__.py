"""Suite definitions shipped with bench (YAML files beside this module)."""
