"""lgml: predict, explain and track China's Little Giant (专精特新"小巨人") designations."""

__version__ = "0.1.0"
