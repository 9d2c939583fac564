"""Built-in detector plugins, one module per family; each registers with ``@register_detector``."""
