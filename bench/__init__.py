"""bench: how well do detectors of AI-generated images hold up across generators, attacks and re-encoding?"""

__version__ = "0.1.0"
