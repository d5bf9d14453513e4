"""The candidate record: fields, validation, and their normalisation from messy input."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

ROLL = r"^[A-Za-z0-9][A-Za-z0-9/_-]{0,39}$"
CENTER = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
NULLABLE = {"date_of_birth", "email", "eligibility_override", "eligibility_note"}


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNDISCLOSED = "undisclosed"


class Eligibility(StrEnum):
    PENDING = "pending"
    ELIGIBLE = "eligible"
    INELIGIBLE = "ineligible"


class Status(StrEnum):
    REGISTERED = "registered"
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"
    DISQUALIFIED = "disqualified"


def clean_text(value: Any) -> Any:
    """Strip, collapse inner whitespace and NFC-normalise text (names in any script)."""
    if isinstance(value, str):
        return re.sub(r"\s+", " ", unicodedata.normalize("NFC", value)).strip()
    return value


class Accommodations(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extra_time_percent: int = Field(0, ge=0, le=200, description="Extra exam time, percent.")
    scribe: bool = False
    large_print: bool = False
    separate_room: bool = False


class CandidateFields(BaseModel):
    """Fields a person edits (everything but the roll number and derived state)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    registration_no: str = Field("", max_length=40)
    full_name: str = Field(min_length=1, max_length=200)
    date_of_birth: dt.date | None = None
    gender: Gender = Gender.UNDISCLOSED
    category: str = Field("", max_length=40)
    email: EmailStr | None = None
    phone: str = Field("", max_length=40, pattern=r"^[0-9+() -]*$")
    address: str = Field("", max_length=500)
    center: str = Field(pattern=CENTER)
    registered_exams: list[str] = Field(default_factory=list, max_length=50)
    accommodations: Accommodations = Field(default_factory=Accommodations)
    documents_verified: bool = False
    fee_paid: bool = False
    status: Status = Status.REGISTERED

    @field_validator("full_name", "address", "category", "registration_no", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return clean_text(v)

    @field_validator("registered_exams", mode="before")
    @classmethod
    def _exams(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [p for p in re.split(r"[,;]", v)]
        if isinstance(v, list):
            return [clean_text(p) for p in v if isinstance(p, str) and p.strip()]
        return v

    @field_validator("date_of_birth", mode="before")
    @classmethod
    def _dob_text(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip():
            try:
                return dt.date.fromisoformat(v.strip())
            except ValueError:
                raise ValueError(f"{v!r} is not a date: use YYYY-MM-DD or DD/MM/YYYY") from None
        return v

    @field_validator("date_of_birth")
    @classmethod
    def _dob(cls, v: dt.date | None) -> dt.date | None:
        if v is not None and not dt.date(1900, 1, 1) <= v <= dt.date.today():
            raise ValueError("Date of birth is not plausible.")
        return v


class CandidateIn(CandidateFields):
    roll_no: str = Field(pattern=ROLL, description="Roll number (natural key); leading zeros "
                                                    "are kept.")


class CandidatePatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    registration_no: str | None = Field(None, max_length=40)
    full_name: str | None = Field(None, min_length=1, max_length=200)
    date_of_birth: dt.date | None = None
    gender: Gender | None = None
    category: str | None = Field(None, max_length=40)
    email: EmailStr | None = None
    phone: str | None = Field(None, max_length=40, pattern=r"^[0-9+() -]*$")
    address: str | None = Field(None, max_length=500)
    registered_exams: list[str] | None = Field(None, max_length=50)
    accommodations: Accommodations | None = None
    documents_verified: bool | None = None
    fee_paid: bool | None = None
    status: Status | None = None
    eligibility_override: Eligibility | None = Field(
        None, description="Decide eligibility by hand (with reasons); null to clear.")
    eligibility_note: str | None = Field(None, max_length=500)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            bad = [k for k, v in data.items() if v is None and k not in NULLABLE]
            if bad:
                raise ValueError(f"{', '.join(sorted(bad))} cannot be null")
        return data

    @field_validator("full_name", "address", "category", "registration_no", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return clean_text(v)


class EligibilityOut(BaseModel):
    status: Eligibility
    reasons: list[str]
    decided_by: str
    decided_at: float


class CandidateOut(BaseModel):
    id: str
    roll_no: str
    registration_no: str
    full_name: str
    date_of_birth: str | None
    gender: Gender
    category: str
    email: str | None
    phone: str
    address: str
    center: str
    registered_exams: list[str]
    accommodations: Accommodations
    documents_verified: bool
    fee_paid: bool
    status: Status
    eligibility: EligibilityOut
    photo: dict[str, Any] | None
    documents: list[dict[str, Any]]
    updated_at: float
