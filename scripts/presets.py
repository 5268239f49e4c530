"""DeBERTa-V3 preset shapes (hidden, layers, heads, intermediate), as `deberta bench --preset`."""

PRESETS = {
    "tiny": (128, 2, 4, 512),
    "xsmall": (384, 12, 6, 1536),
    "small": (768, 6, 12, 3072),
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
}
