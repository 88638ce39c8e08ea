"""The 18-label CT-RATE report labeler: rules, negation/uncertainty, and the fixed dev/held-out split."""

from model.labeler.labeler import LabelerConfig, find_mentions, label_report, label_reports

__all__ = ["LabelerConfig", "find_mentions", "label_report", "label_reports"]
