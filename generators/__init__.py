"""Built-in generator plugins (installed as ``bench.generators``), one module per family; each registers with
``@register_generator`` and imports torch and diffusers where they are used, so that listing generators
does not."""
