"""Built-in generator plugins, one module per family; each registers with ``@register_generator``."""
