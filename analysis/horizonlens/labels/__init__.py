"""Labels: what people and label files say about runs and steps, stored beside the corpus with every version."""

from horizonlens.labels.annotations import Label, add_labels, delete_label, edit_label, export_bytes

__all__ = ["Label", "add_labels", "delete_label", "edit_label", "export_bytes"]
