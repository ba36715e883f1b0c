"""Size priors: table consistency, dataset coverage and lookup rules (lifting/priors.py).

The class lists below are data: COCO's 80 official names and Objects365 v2's 365 official names,
spelled exactly as released (typos such as "Dinning Table" and trailing spaces included; as in
mmdetection's Objects365V2Dataset.CLASSES).
"""
from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest

from lifting.priors import DEFAULT_PATH, GENERIC, SizePriors, normalise_category, parse_entry, sorted_dims

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO_MINI_JSON = SHARED_DATA / "coco-mini" / "annotations" / "instances_val2017.json"

COCO_80 = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
    'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
    'teddy bear', 'hair drier', 'toothbrush',
)

OBJECTS365_V2 = (
    'Person', 'Sneakers', 'Chair', 'Other Shoes', 'Hat', 'Car', 'Lamp', 'Glasses', 'Bottle', 'Desk',
    'Cup', 'Street Lights', 'Cabinet/shelf', 'Handbag/Satchel', 'Bracelet', 'Plate',
    'Picture/Frame', 'Helmet', 'Book', 'Gloves', 'Storage box', 'Boat', 'Leather Shoes', 'Flower',
    'Bench', 'Potted Plant', 'Bowl/Basin', 'Flag', 'Pillow', 'Boots', 'Vase', 'Microphone',
    'Necklace', 'Ring', 'SUV', 'Wine Glass', 'Belt', 'Moniter/TV', 'Backpack', 'Umbrella',
    'Traffic Light', 'Speaker', 'Watch', 'Tie', 'Trash bin Can', 'Slippers', 'Bicycle', 'Stool',
    'Barrel/bucket', 'Van', 'Couch', 'Sandals', 'Bakset', 'Drum', 'Pen/Pencil', 'Bus', 'Wild Bird',
    'High Heels', 'Motorcycle', 'Guitar', 'Carpet', 'Cell Phone', 'Bread', 'Camera', 'Canned',
    'Truck', 'Traffic cone', 'Cymbal', 'Lifesaver', 'Towel', 'Stuffed Toy', 'Candle', 'Sailboat',
    'Laptop', 'Awning', 'Bed', 'Faucet', 'Tent', 'Horse', 'Mirror', 'Power outlet', 'Sink', 'Apple',
    'Air Conditioner', 'Knife', 'Hockey Stick', 'Paddle', 'Pickup Truck', 'Fork', 'Traffic Sign',
    'Ballon', 'Tripod', 'Dog', 'Spoon', 'Clock', 'Pot', 'Cow', 'Cake', 'Dinning Table', 'Sheep',
    'Hanger', 'Blackboard/Whiteboard', 'Napkin', 'Other Fish', 'Orange/Tangerine', 'Toiletry',
    'Keyboard', 'Tomato', 'Lantern', 'Machinery Vehicle', 'Fan', 'Green Vegetables', 'Banana',
    'Baseball Glove', 'Airplane', 'Mouse', 'Train', 'Pumpkin', 'Soccer', 'Skiboard', 'Luggage',
    'Nightstand', 'Tea pot', 'Telephone', 'Trolley', 'Head Phone', 'Sports Car', 'Stop Sign',
    'Dessert', 'Scooter', 'Stroller', 'Crane', 'Remote', 'Refrigerator', 'Oven', 'Lemon', 'Duck',
    'Baseball Bat', 'Surveillance Camera', 'Cat', 'Jug', 'Broccoli', 'Piano', 'Pizza', 'Elephant',
    'Skateboard', 'Surfboard', 'Gun', 'Skating and Skiing shoes', 'Gas stove', 'Donut', 'Bow Tie',
    'Carrot', 'Toilet', 'Kite', 'Strawberry', 'Other Balls', 'Shovel', 'Pepper', 'Computer Box',
    'Toilet Paper', 'Cleaning Products', 'Chopsticks', 'Microwave', 'Pigeon', 'Baseball',
    'Cutting/chopping Board', 'Coffee Table', 'Side Table', 'Scissors', 'Marker', 'Pie', 'Ladder',
    'Snowboard', 'Cookies', 'Radiator', 'Fire Hydrant', 'Basketball', 'Zebra', 'Grape', 'Giraffe',
    'Potato', 'Sausage', 'Tricycle', 'Violin', 'Egg', 'Fire Extinguisher', 'Candy', 'Fire Truck',
    'Billards', 'Converter', 'Bathtub', 'Wheelchair', 'Golf Club', 'Briefcase', 'Cucumber',
    'Cigar/Cigarette ', 'Paint Brush', 'Pear', 'Heavy Truck', 'Hamburger', 'Extractor',
    'Extention Cord', 'Tong', 'Tennis Racket', 'Folder', 'American Football', 'earphone', 'Mask',
    'Kettle', 'Tennis', 'Ship', 'Swing', 'Coffee Machine', 'Slide', 'Carriage', 'Onion',
    'Green beans', 'Projector', 'Frisbee', 'Washing Machine/Drying Machine', 'Chicken', 'Printer',
    'Watermelon', 'Saxophone', 'Tissue', 'Toothbrush', 'Ice cream', 'Hotair ballon', 'Cello',
    'French Fries', 'Scale', 'Trophy', 'Cabbage', 'Hot dog', 'Blender', 'Peach', 'Rice',
    'Wallet/Purse', 'Volleyball', 'Deer', 'Goose', 'Tape', 'Tablet', 'Cosmetics', 'Trumpet',
    'Pineapple', 'Golf Ball', 'Ambulance', 'Parking meter', 'Mango', 'Key', 'Hurdle', 'Fishing Rod',
    'Medal', 'Flute', 'Brush', 'Penguin', 'Megaphone', 'Corn', 'Lettuce', 'Garlic', 'Swan',
    'Helicopter', 'Green Onion', 'Sandwich', 'Nuts', 'Speed Limit Sign', 'Induction Cooker',
    'Broom', 'Trombone', 'Plum', 'Rickshaw', 'Goldfish', 'Kiwi fruit', 'Router/modem', 'Poker Card',
    'Toaster', 'Shrimp', 'Sushi', 'Cheese', 'Notepaper', 'Cherry', 'Pliers', 'CD', 'Pasta',
    'Hammer', 'Cue', 'Avocado', 'Hamimelon', 'Flask', 'Mushroon', 'Screwdriver', 'Soap', 'Recorder',
    'Bear', 'Eggplant', 'Board Eraser', 'Coconut', 'Tape Measur/ Ruler', 'Pig', 'Showerhead',
    'Globe', 'Chips', 'Steak', 'Crosswalk Sign', 'Stapler', 'Campel', 'Formula 1 ', 'Pomegranate',
    'Dishwasher', 'Crab', 'Hoverboard', 'Meat ball', 'Rice Cooker', 'Tuba', 'Calculator', 'Papaya',
    'Antelope', 'Parrot', 'Seal', 'Buttefly', 'Dumbbell', 'Donkey', 'Lion', 'Urinal', 'Dolphin',
    'Electric Drill', 'Hair Dryer', 'Egg tart', 'Jellyfish', 'Treadmill', 'Lighter', 'Grapefruit',
    'Game board', 'Mop', 'Radish', 'Baozi', 'Target', 'French', 'Spring Rolls', 'Monkey', 'Rabbit',
    'Pencil Case', 'Yak', 'Red Cabbage', 'Binoculars', 'Asparagus', 'Barbell', 'Scallop', 'Noddles',
    'Comb', 'Dumpling', 'Oyster', 'Table Teniis paddle', 'Cosmetics Brush/Eyeliner Pencil',
    'Chainsaw', 'Eraser', 'Lobster', 'Durian', 'Okra', 'Lipstick', 'Cosmetics Mirror', 'Curling',
    'Table Tennis ',
)

#: Omni3D's 50 categories (cubercnn/data/builtin.py) and SUN RGB-D label names (37-class set without
#: wall/floor/ceiling, plus the 3D-detection names), spelled as in the datasets.
OMNI3D = (
    'chair', 'table', 'cabinet', 'car', 'lamp', 'books', 'sofa', 'pedestrian', 'picture', 'window',
    'pillow', 'truck', 'door', 'blinds', 'sink', 'shelves', 'television', 'shoes', 'cup', 'bottle',
    'bookcase', 'laptop', 'desk', 'cereal box', 'floor mat', 'traffic cone', 'mirror', 'barrier',
    'counter', 'camera', 'bicycle', 'toilet', 'bus', 'bed', 'refrigerator', 'trailer', 'box', 'oven',
    'clothes', 'van', 'towel', 'motorcycle', 'night stand', 'stove', 'machine', 'stationery', 'bathtub',
    'cyclist', 'curtain', 'bin',
)
SUNRGBD = (
    'cabinet', 'bed', 'chair', 'sofa', 'table', 'door', 'window', 'bookshelf', 'picture', 'counter',
    'blinds', 'desk', 'shelves', 'curtain', 'dresser', 'pillow', 'mirror', 'floor_mat', 'clothes',
    'books', 'fridge', 'tv', 'paper', 'towel', 'shower_curtain', 'box', 'whiteboard', 'person',
    'night_stand', 'toilet', 'sink', 'lamp', 'bathtub', 'bag', 'garbage_bin', 'monitor', 'bookshelf',
    'sofa_chair', 'coffee_table', 'endtable', 'kitchen_counter', 'tv_stand', 'ottoman', 'stool',
)
DATASET_TAGS = {"coco", "objects365", "sunrgbd", "omni3d", "synthetic"}


@pytest.fixture(scope="module")
def priors() -> SizePriors:
    return SizePriors.load()


@pytest.fixture(scope="module")
def table() -> dict:
    return json.loads(DEFAULT_PATH.read_text())


def _volume(p) -> float:
    return p.dims[0] * p.dims[1] * p.dims[2]


# -- the table itself -------------------------------------------------------------------------

def test_table_header(table):
    assert table["schema_version"] == 1
    assert table["units"] == "metres"
    assert "w >= l" in table["convention"] and "gravity" in table["convention"]
    assert isinstance(parse_entry(table["generic"]), tuple)


def test_every_entry_is_consistent(table):
    """Raw JSON values (before any sorting): positive, min <= dims <= max, w >= l, plausible h."""
    bad = []
    for name, e in table["categories"].items():
        for key in ("dims", "min", "max"):
            v = e[key]
            if len(v) != 3 or not all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in v):
                bad.append((name, key, "not 3 positive numbers"))
                continue
            if v[0] < v[2]:
                bad.append((name, key, "w < l"))
        for i in range(3):
            if not e["min"][i] <= e["dims"][i] <= e["max"][i]:
                bad.append((name, i, "min <= dims <= max violated"))
        # h: from a sheet of paper to a ship or a tower crane; typical h under 30 m.
        if not (2e-4 <= e["min"][1] and e["dims"][1] <= 30.0 and e["max"][1] <= 150.0):
            bad.append((name, "h", e["dims"][1]))
        # A plausible range, not a point: max spans at least 10 % above min on every axis.
        if not all(hi >= 1.1 * lo for lo, hi in zip(e["min"], e["max"])):
            bad.append((name, "range", "too narrow"))
    assert not bad, bad[:20]


def test_names_normalised_aliases_unambiguous(table):
    owner: dict[str, str] = {}
    for name, e in table["categories"].items():
        assert name == normalise_category(name), name
        assert set(e["datasets"]) <= DATASET_TAGS, (name, e["datasets"])
        for key in [name] + [normalise_category(a) for a in e["aliases"]]:
            assert owner.setdefault(key, name) == name, f"{key!r} used by {owner[key]!r} and {name!r}"


def test_generic_covers_every_category(priors, table):
    g = priors.generic
    assert g.source == GENERIC and g.matched_name == GENERIC and g.is_generic
    for name in priors.names():
        p = priors.get(name)
        assert all(gl <= lo and hi <= gh for gl, lo, hi, gh in zip(g.min, p.min, p.max, g.max)), name


def test_physical_orderings(priors):
    """Relations everyone knows must hold between the typical sizes."""
    h = {n: priors.get(n).dims[1] for n in ("giraffe", "elephant", "horse", "person", "dog", "cat", "cup")}
    assert h["giraffe"] > h["elephant"] > h["horse"] > h["person"] > h["dog"] > h["cat"] > h["cup"]
    length = {n: priors.get(n).dims[0] for n in ("train", "bus", "car", "motorcycle", "bicycle", "skateboard")}
    assert length["train"] > length["bus"] > length["car"] > length["motorcycle"] > length["bicycle"] > length["skateboard"]
    chain = ["golf ball", "tennis ball", "apple", "basketball", "chair", "bed", "car", "bus", "airplane"]
    vols = [_volume(priors.get(n)) for n in chain]
    assert vols == sorted(vols) and len(set(vols)) == len(vols), dict(zip(chain, vols))
    # Flat things are flat, tall things are tall.
    for flat in ("carpet", "pizza", "plate", "cell phone", "frisbee"):
        p = priors.get(flat)
        assert p.dims[1] < 0.2 * p.dims[0], flat
    for tall in ("person", "refrigerator", "door", "bottle", "giraffe", "street lights"):
        p = priors.get(tall)
        assert p.dims[1] > p.dims[0], tall


def test_real_sizes_inside_ranges(priors):
    """Measured instances (manufacturer or regulation sizes, metres) fall inside [min, max]."""
    known = {
        "car": (4.36, 1.44, 1.80),           # Toyota Corolla
        "bus": (12.0, 3.1, 2.55),            # EU standard city bus
        "bicycle": (1.75, 1.05, 0.62),       # adult city bike
        "basketball": (0.24, 0.24, 0.24),    # size 7
        "golf ball": (0.0427, 0.0427, 0.0427),
        "tennis ball": (0.067, 0.067, 0.067),
        "refrigerator": (0.6, 1.85, 0.65),   # w/l sorted by sorted_dims
        "door": (0.82, 2.04, 0.04),
        "bathtub": (1.7, 0.58, 0.75),
        "cell phone": (0.147, 0.008, 0.072),
        "laptop": (0.304, 0.21, 0.215),      # 13-inch, open
        "stop sign": (0.75, 0.75, 0.002),
    }
    for name, dims in known.items():
        assert priors.get(name).check(dims) is None, (name, dims)


# -- coverage ---------------------------------------------------------------------------------

def _explicit(priors, name):
    p = priors.get(name)
    assert p.match in ("exact", "alias"), (name, p)
    return p


def test_all_80_coco_names(priors, table):
    assert len(COCO_80) == 80 == len(set(COCO_80))
    for name in COCO_80:
        p = _explicit(priors, name)
        assert "coco" in table["categories"][p.matched_name]["datasets"], name


def test_coco_mini_annotation_categories_resolve(priors):
    if not COCO_MINI_JSON.exists():
        pytest.skip(f"shared COCO sample data not found at {COCO_MINI_JSON}")
    cats = json.loads(COCO_MINI_JSON.read_text())["categories"]
    assert len(cats) == 80
    for c in cats:
        assert not priors.get(c["name"]).is_generic, c["name"]
        assert normalise_category(c["name"]) in COCO_80


def test_all_365_objects365_names(priors, table):
    assert len(OBJECTS365_V2) == 365 == len(set(OBJECTS365_V2))
    matched = set()
    for name in OBJECTS365_V2:
        p = _explicit(priors, name)
        assert "objects365" in table["categories"][p.matched_name]["datasets"], name
        matched.add(p.matched_name)
    assert len(matched) >= 355  # hardly any two official classes share an entry


def test_official_spellings_kept_as_aliases(table):
    aliases = {a for e in table["categories"].values() for a in e["aliases"]} | set(table["categories"])
    missing = [n for n in OBJECTS365_V2 if n not in aliases]
    assert not missing, missing


def test_indoor_and_omni3d_names(priors, table):
    for name in OMNI3D + SUNRGBD:
        p = _explicit(priors, name)
        ds = table["categories"][p.matched_name]["datasets"]
        assert "omni3d" in ds or "sunrgbd" in ds, name


def test_synthetic_categories_cover_the_catalogue(priors):
    from lifting.synthetic import CATALOGUE

    for name, (_shape, lo, hi) in CATALOGUE.items():
        p = _explicit(priors, name)
        for dims in (lo, hi):
            assert p.check(dims) is None, (name, dims, p)


def test_cross_dataset_merges(priors):
    groups = [
        ("dining table", "Dinning Table"),
        ("couch", "Couch", "sofa"),
        ("tv", "Moniter/TV", "television"),
        ("trash can", "Trash bin Can", "bin", "garbage_bin"),
        ("person", "Person", "pedestrian"),
        ("night stand", "Nightstand", "night_stand"),
        ("refrigerator", "fridge"),
        ("sports ball", "Other Balls", "ball"),
        ("hair drier", "Hair Dryer"),
        ("suitcase", "Luggage"),
        ("teddy bear", "Stuffed Toy"),
        ("bookshelf", "bookcase"),
    ]
    for group in groups:
        names = {priors.get(n).matched_name for n in group}
        assert len(names) == 1, (group, names)


# -- lookup rules -----------------------------------------------------------------------------

def test_normalise_category():
    assert normalise_category("Cell Phone") == "cell phone"
    assert normalise_category("  Sneakers ") == "sneakers"
    assert normalise_category("night_stand") == "night stand"
    assert normalise_category("Cabinet/shelf") == "cabinet shelf"
    assert normalise_category("Tape Measur/ Ruler") == "tape measur ruler"
    assert normalise_category("Traffic \t  Light") == "traffic light"


def test_alias_lookup(priors):
    p = priors.get("Dinning Table")
    assert (p.matched_name, p.match, p.source) == ("dining table", "alias", "builtin")
    assert priors.get("dining table").match == "exact"
    assert priors.get("Cabinet/shelf").matched_name == "cabinet"
    assert priors.get("Formula 1 ") == priors.get("formula 1")
    assert "Moniter/TV" in priors and "flux capacitor" not in priors


@pytest.mark.parametrize("query, expected, match", [
    ("chairs", "chair", "inflection"),
    ("Boxes", "box", "inflection"),
    ("knives", "knife", "inflection"),
    ("people", "person", "alias"),
    ("teddy bears", "teddy bear", "inflection"),
    ("cookie", "cookies", "alias"),
    ("buses", "bus", "inflection"),
    ("office chair", "chair", "head_noun"),
    ("Office_Chairs", "chair", "head_noun"),
    ("coffee table", "coffee table", "exact"),
    ("wooden coffee table", "coffee table", "head_noun"),
    ("kitchen table", "dining table", "alias"),
    ("folding table", "table", "head_noun"),
    ("red fire trucks", "fire truck", "head_noun"),
    ("bottle of water", "bottle", "head_noun"),
    ("dining-table", "dining table", "alias"),
    ("toy truck", "toy", "head_noun"),
])
def test_plural_and_head_noun(priors, query, expected, match):
    p = priors.get(query)
    assert (p.matched_name, p.match) == (expected, match)


@pytest.mark.parametrize("query", ["flux capacitor", "", "   ", "zzz", "wall"])
def test_unknown_is_generic(priors, query):
    p = priors.get(query)
    assert p.is_generic and p.source == GENERIC and p.matched_name == GENERIC
    assert p == priors.generic


def test_lookups_are_cached(priors):
    a = priors.get("Office Chairs")
    assert priors.get("office  chairs") is a  # same normalised key -> the cached object


def test_check_reason_codes(priors):
    car = priors.get("car")
    assert car.check((4.5, 1.5, 1.8)) is None
    assert car.check((1.8, 1.5, 4.5)) is None  # w and l in either order
    assert car.check((0.3, 0.2, 0.2)) == "size_below_prior"
    assert car.check((30.0, 1.5, 2.0)) == "size_above_prior"
    assert car.check((float("nan"), 1.5, 2.0)) == "size_invalid"
    assert car.check((4.5, -1.0, 1.8)) == "size_invalid"
    assert car.check((6.9, 1.5, 1.8)) == "size_above_prior"
    assert car.check((6.9, 1.5, 1.8), slack=1.1) is None
    assert sorted_dims((1.0, 2.0, 3.0)) == (3.0, 2.0, 1.0)


# -- extra (LLM) priors files -----------------------------------------------------------------

def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_extra_llm_file_overrides_and_extends(tmp_path):
    extra = _write(tmp_path / "llm_priors.json", {
        "schema_version": 1,
        "categories": {
            # overrides an entry: aliases and inflections follow
            "Chair": {"dims": [0.6, 1.0, 0.55], "min": [0.4, 0.7, 0.4], "max": [0.9, 1.3, 0.8], "source": "llm:test-model"},
            # an alias of an entry: gets its own entry for that exact name only
            "Dinning Table": {"dims": [2.0, 0.8, 1.0], "min": [1.0, 0.6, 0.6], "max": [3.0, 1.0, 1.4], "source": "llm:test-model"},
            # a new category, horizontal extents given in the wrong order: sorted on load
            "hoverbike": {"dims": [1.0, 1.2, 3.0], "min": [0.6, 0.8, 2.0], "max": [1.5, 1.6, 4.0], "source": "llm:test-model"},
            # malformed entries are skipped with a reason
            "zorblax": {"dims": [1.0, 1.0, 1.0], "min": [2.0, 0.5, 0.5], "max": [3.0, 2.0, 2.0]},
            "quuxite": {"dims": [1.0, -1.0, 1.0], "min": [0.5, 0.5, 0.5], "max": [3.0, 2.0, 2.0]},
            "fnordle": {"dims": [1.0, 1.0], "min": [0.5, 0.5, 0.5], "max": [3.0, 2.0, 2.0]},
        },
    })
    base = SizePriors.load()
    p = SizePriors.load(extra_files=[extra])
    chair = p.get("chair")
    assert chair.dims == (0.6, 1.0, 0.55) and chair.source == "llm:test-model" and chair.match == "exact"
    assert p.get("Chairs").source == "llm:test-model"
    assert p.get("office chair").source == "llm:test-model"
    assert p.get("Dinning Table").dims == (2.0, 0.8, 1.0)
    assert p.get("dining table") == base.get("dining table")
    hb = p.get("hoverbikes")
    assert (hb.matched_name, hb.dims, hb.min, hb.max) == ("hoverbike", (3.0, 1.2, 1.0), (2.0, 0.8, 0.6), (4.0, 1.6, 1.5))
    assert p.skipped == {
        "llm_priors.json:zorblax": "prior_inconsistent_range",
        "llm_priors.json:quuxite": "prior_nonpositive",
        "llm_priors.json:fnordle": "prior_malformed",
    }
    assert p.get("zorblax").is_generic
    assert len(p) == len(base) + 2
    # untouched entries are unchanged
    assert p.get("giraffe") == base.get("giraffe")


def test_later_extra_files_win_and_generic_override(tmp_path):
    a = _write(tmp_path / "a.json", {"schema_version": 1, "source": "llm:a", "categories": {
        "cup": {"dims": [0.1, 0.1, 0.1], "min": [0.05, 0.05, 0.05], "max": [0.2, 0.2, 0.2]}}})
    b = _write(tmp_path / "b.json", {"schema_version": 1, "categories": {
        "cup": {"dims": [0.12, 0.1, 0.1], "min": [0.05, 0.05, 0.05], "max": [0.2, 0.2, 0.2]},
        "generic": {"dims": [1.0, 1.0, 1.0], "min": [0.1, 0.1, 0.1], "max": [10.0, 10.0, 10.0]}}})
    assert SizePriors.load(extra_files=[a]).get("cup").source == "llm:a"
    p = SizePriors.load(extra_files=[a, b])
    assert p.get("cup").dims == (0.12, 0.1, 0.1) and p.get("cup").source == "file:b.json"
    assert p.get("flux capacitor").dims == (1.0, 1.0, 1.0) and p.get("flux capacitor").source == GENERIC


def test_surface_is_optional_and_checked(tmp_path, priors):
    """"surface" (where depth sees an object inside its box, a fraction of the half-depth):
    absent for solid objects, below a half for people; an extra file may set it; a value
    outside [0, 1] skips the entry (extra file) or fails the table."""
    assert priors.get("car").surface is None and priors.get("pedestrian").surface < 0.5
    # every way of reaching an entry keeps it (loose spellings, "X of Y" heads)
    for q in ("traffic-cone", "Pedestrian.", "person of interest"):
        assert priors.get(q).surface == priors.get(q.strip(".").replace("-", " ").split(" of ")[0]).surface is not None
    extra = _write(tmp_path / "s.json", {"schema_version": 1, "categories": {
        "scarecrow": {"dims": [0.8, 1.7, 0.3], "min": [0.4, 1.0, 0.1], "max": [1.5, 2.5, 0.6], "surface": 0.2},
        "mannequin": {"dims": [0.5, 1.7, 0.3], "min": [0.4, 1.0, 0.1], "max": [1.5, 2.5, 0.6], "surface": 1.5},
        "dummy": {"dims": [0.5, 1.7, 0.3], "min": [0.4, 1.0, 0.1], "max": [1.5, 2.5, 0.6], "surface": "front"}}})
    p = SizePriors.load(extra_files=[extra])
    assert p.get("scarecrow").surface == 0.2
    assert p.skipped == {"s.json:mannequin": "prior_malformed", "s.json:dummy": "prior_malformed"}
    bad_main = _write(tmp_path / "main.json", {"schema_version": 1, "categories": {
        "x": {"dims": [1, 1, 1], "min": [0.5, 0.5, 0.5], "max": [3, 3, 3], "surface": -0.1}}})
    with pytest.raises(ValueError, match="prior_malformed"):
        SizePriors.load(bad_main)


def test_bad_files_raise(tmp_path):
    with pytest.raises(ValueError, match="schema_version"):
        SizePriors.load(extra_files=[_write(tmp_path / "v2.json", {"schema_version": 2, "categories": {}})])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SizePriors.load(extra_files=[broken])
    with pytest.raises(FileNotFoundError):
        SizePriors.load(tmp_path / "missing.json")
    bad_main = _write(tmp_path / "main.json", {"schema_version": 1, "categories": {
        "x": {"dims": [1, 1, 1], "min": [2, 2, 2], "max": [3, 3, 3]}}})
    with pytest.raises(ValueError, match="prior_inconsistent_range"):
        SizePriors.load(bad_main)


def test_pickle_round_trip(priors):
    clone = pickle.loads(pickle.dumps(priors))
    assert clone.get("Office Chairs") == priors.get("Office Chairs")
    assert clone.names() == priors.names()
