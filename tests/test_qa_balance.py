"""Balance over a run of synthetic scenes: yes/no and left/right answers within 2 points."""
from __future__ import annotations

from lifting.qa import QAConfig, generate_qa
from test_qa_scenes import random_record

LR = {"left_of": "left", "left": "left", "right_of": "right", "right": "right"}


def _run(seed: int, n: int = 250):
    yes = no = left = right = 0
    per_image = []
    cfg = QAConfig(seed=seed)
    for s in range(n):
        sample = generate_qa(random_record(5000 + s, n_objects=3 + s % 6), cfg)
        y = nn = 0
        for q in sample["questions"]:
            v = q["answer"]["value"]
            if q["form"] == "yes_no":
                y += v is True
                nn += v is False
            elif q["form"] == "choice" and v in LR:
                left += LR[v] == "left"
                right += LR[v] == "right"
        yes, no = yes + y, no + nn
        per_image.append(y - nn)
        lr = [LR[q["answer"]["value"]] for q in sample["questions"]
              if q["form"] == "choice" and q["answer"]["value"] in LR]
        per_image.append(lr.count("left") - lr.count("right"))
    return yes, no, left, right, per_image


def test_yes_no_and_left_right_are_balanced_within_two_points():
    for seed in (0, 1):
        yes, no, left, right, per_image = _run(seed)
        assert yes + no > 200 and left + right > 100
        assert abs(yes / (yes + no) - 0.5) <= 0.02, (yes, no)
        assert abs(left / (left + right) - 0.5) <= 0.02, (left, right)
        assert all(d == 0 for d in per_image)  # balanced inside every image
