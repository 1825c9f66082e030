from converters import labels


def test_affectnet_to_fer2013_codes_match_the_published_mapping():
    # shared/ENGINES.md: AffectNet -> FER2013 codes 0->6, 1->3, 2->4, 3->5, 4->2, 5->1, 6->0
    assert [labels.canonical_to_fer2013(c) for c in range(7)] == [6, 3, 4, 5, 2, 1, 0]
    assert [labels.fer2013_to_canonical(labels.canonical_to_fer2013(c)) for c in range(7)] == list(range(7))


def test_fer2013_names_land_on_the_same_canonical_names():
    for fer_code, fer_name in enumerate(labels.FER2013_NAMES):
        canon = labels.CANONICAL_NAMES[labels.fer2013_to_canonical(fer_code)]
        assert canon[:3] == fer_name[:3] or (fer_name, canon) == ("angry", "anger")


def test_ferplus_columns_map_by_meaning():
    expect = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
              "anger": "anger", "disgust": "disgust", "fear": "fear", "contempt": "contempt"}
    for col, canon in labels.FERPLUS_TO_CANONICAL.items():
        assert labels.CANONICAL_NAMES[canon] == expect[labels.FERPLUS_VOTE_COLUMNS[col]]


def test_class_names_are_not_substrings_of_each_other_or_of_our_folder_names():
    names = labels.class_names(8)
    folders = ["data", "affectnet", "fer2013", "ferplus", "sample", "crops", "darknet", "table", "yolo", "train",
               "val", "valid", "test", "backup", "results", "parts", "emotion", "scenes", "weights", "runs"]
    for a in names:
        assert all(a not in b for b in names if b != a)
        assert all(a not in f for f in folders), a


def test_class_names_7_and_8():
    assert labels.class_names(7) == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
    assert labels.class_names(8)[-1] == "contempt"
