from dashboard.components import coming_soon

coming_soon("Quantize", "int8 (dynamic, static, weight-only), fp16 and bf16, measured for real on this device, "
            "and pipelines that chain techniques with their lineage.")
