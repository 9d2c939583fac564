"""Built-in detector plugins (installed as ``bench.detectors``), one module per family; each registers with
``@register_detector`` and imports torch inside its factory, so that listing detectors does not."""
