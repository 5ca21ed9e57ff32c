"""Evaluation: what a trained model's predictions say (metrics, regrouping, significance, attribution)."""  # noqa: E501
