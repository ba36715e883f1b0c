"""QA generation engine: 3D detection, 3D grounding and spatial chain-of-thought
conversations from the kept 3D boxes of an image record (docs/QA_FAMILIES.md)."""
from lifting.qa.benchmark import build_benchmark, score
from lifting.qa.config import DEFAULT_FAMILIES, Margins, QAConfig
from lifting.qa.engine import assemble_conversation, generate_qa
from lifting.qa.formats import to_sharegpt

__all__ = ["QAConfig", "Margins", "DEFAULT_FAMILIES", "generate_qa", "assemble_conversation", "to_sharegpt",
           "build_benchmark", "score"]
