"""Human ratings (NS/WA/EU/ES, 1-5), grouped in label sets, for agreement reports and head fitting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from evalsvc.errors import InvalidParameter
from evalsvc.store.models import HumanLabel, LabelSet
from evalsvc.store.upsert import upsert

_SCORES = ("ns", "wa", "eu", "es")


@dataclass(frozen=True)
class HumanLabelSpec:
    """One rater's scores for one item; the audio hashes, when known, join it to model results."""

    item_key: str
    rater: str
    ns: float | None = None
    wa: float | None = None
    eu: float | None = None
    es: float | None = None
    query_sha256: str | None = None
    response_sha256: str | None = None


def create_label_set(
    session: Session, name: str, *, description: str | None = None, tenant_id: int | None = None
) -> LabelSet:
    if session.scalars(select(LabelSet.id).where(LabelSet.name == name)).first() is not None:
        raise InvalidParameter(
            f"label set {name!r} already exists: import under another --name "
            "(`evalsvc labels list` shows the names in use)"
        )
    label_set = LabelSet(name=name, description=description, tenant_id=tenant_id)
    session.add(label_set)
    session.flush()
    return label_set


def upsert_labels(session: Session, label_set_id: int, labels: Sequence[HumanLabelSpec]) -> None:
    """Store ratings in batches; a rater rating the same item again replaces the earlier scores."""
    for label in labels:
        for name in _SCORES:
            value = getattr(label, name)
            if value is not None and not 1.0 <= value <= 5.0:
                raise InvalidParameter(
                    f"label {label.item_key!r} by {label.rater!r}: {name.upper()}={value} is outside 1-5"
                )
    rows = [vars(label) | {"label_set_id": label_set_id} for label in labels]
    upsert(
        session,
        HumanLabel,
        rows,
        conflict=["label_set_id", "item_key", "rater"],
        update=[*_SCORES, "query_sha256", "response_sha256"],
    )
