"""Grid search over the network's hyperparameters with GridSearchCV (two local processes).

    python examples/grid_search.py
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from digitnet import DigitNetClassifier


def main() -> None:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    pipeline = Pipeline([
        ("scale", StandardScaler()),
        ("net", DigitNetClassifier(max_iter=15, random_state=0)),
    ])
    grid = {
        "net__hidden_layer_sizes": [(32,), (128, 64)],
        "net__learning_rate_init": [1e-3, 1e-2],
    }
    search = GridSearchCV(pipeline, grid, cv=3, n_jobs=2).fit(X_train, y_train)

    for params, score in zip(search.cv_results_["params"],
                             search.cv_results_["mean_test_score"], strict=True):
        print(f"{score:.4f}  {params}")
    print(f"best: {search.best_params_}")
    print(f"test accuracy of the refitted best pipeline: {search.score(X_test, y_test):.4f}")


if __name__ == "__main__":
    main()
