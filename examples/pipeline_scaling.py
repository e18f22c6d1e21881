"""Scaling belongs in the pipeline: the same network on raw and on scaled digits.

DigitNetClassifier uses its inputs as given (like scikit-learn's MLPClassifier), so a
scaler goes in front of it as a Pipeline step, fitted on the training folds only.

    python examples/pipeline_scaling.py
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from digitnet import DigitNetClassifier


def main() -> None:
    X, y = load_digits(return_X_y=True)  # 8x8 images, pixel values 0-16, bundled offline
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    candidates = {
        "raw pixels (0-16)": DigitNetClassifier(hidden_layer_sizes=(128,), random_state=0),
        "MinMaxScaler": make_pipeline(
            MinMaxScaler(), DigitNetClassifier(hidden_layer_sizes=(128,), random_state=0)
        ),
        "StandardScaler": make_pipeline(
            StandardScaler(), DigitNetClassifier(hidden_layer_sizes=(128,), random_state=0)
        ),
    }
    for name, model in candidates.items():
        model.fit(X_train, y_train)
        print(f"{name:<18} test accuracy {model.score(X_test, y_test):.4f}")


if __name__ == "__main__":
    main()
