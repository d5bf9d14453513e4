"""Request and response models of accounts and centres (pydantic, strict)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from node.services.auth.permissions import Role

USERNAME = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{2,63}$"
CENTER = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class UserCreate(Strict):
    username: str = Field(pattern=USERNAME, description="Login name, unique in the deployment.")
    password: str = Field(min_length=1, max_length=256, description="Initial password.")
    role: Role = Field(description="admin, center_admin, invigilator, evaluator or candidate.")
    center: str | None = Field(None, pattern=CENTER, description="Centre code (not for admin).")
    full_name: str = Field("", max_length=200)
    email: EmailStr | None = None
    is_active: bool = True


class UserUpdate(Strict):
    password: str | None = Field(None, min_length=1, max_length=256)
    role: Role | None = None
    center: str | None = Field(None, pattern=CENTER)
    full_name: str | None = Field(None, max_length=200)
    email: EmailStr | None = None
    is_active: bool | None = None


class UserPut(Strict):
    role: Role
    center: str | None = Field(None, pattern=CENTER)
    full_name: str = Field("", max_length=200)
    email: EmailStr | None = None
    is_active: bool = True
    password: str | None = Field(None, min_length=1, max_length=256)


class UserOut(BaseModel):
    id: str = Field(description="The username (natural key).")
    username: str
    role: Role
    center: str | None
    full_name: str
    email: str | None
    is_active: bool
    totp_enabled: bool
    date_joined: float
    locked: bool = Field(description="True while sign-in is locked after failures.")


class CenterCreate(Strict):
    code: str = Field(pattern=CENTER, description="Centre code, e.g. C01.")
    name: str = Field(min_length=1, max_length=200)
    address: str = Field("", max_length=500)
    city: str = Field("", max_length=100)
    capacity: int = Field(0, ge=0, le=100_000, description="Seats.")
    contact_email: EmailStr | None = None
    contact_phone: str = Field("", max_length=40)
    is_active: bool = True


class CenterUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    address: str | None = Field(None, max_length=500)
    city: str | None = Field(None, max_length=100)
    capacity: int | None = Field(None, ge=0, le=100_000)
    contact_email: EmailStr | None = None
    contact_phone: str | None = Field(None, max_length=40)
    is_active: bool | None = None


class CenterPut(Strict):
    name: str = Field(min_length=1, max_length=200)
    address: str = Field("", max_length=500)
    city: str = Field("", max_length=100)
    capacity: int = Field(0, ge=0, le=100_000)
    contact_email: EmailStr | None = None
    contact_phone: str = Field("", max_length=40)
    is_active: bool = True


class CenterOut(BaseModel):
    id: str
    code: str
    name: str
    address: str
    city: str
    capacity: int
    contact_email: str | None
    contact_phone: str
    is_active: bool
    created_at: float


class LoginIn(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    otp: str | None = Field(None, pattern=r"^[0-9]{6}$")


class LoginOut(BaseModel):
    access: str
    refresh: str
    user: UserOut


class RefreshIn(Strict):
    refresh: str = Field(min_length=1, max_length=4096)


class RefreshOut(BaseModel):
    access: str
    refresh: str


class ForceLogoutIn(Strict):
    username: str | None = Field(None, pattern=USERNAME)
    session_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")
    reason: str = Field("", max_length=200)


class OtpIn(Strict):
    otp: str = Field(pattern=r"^[0-9]{6}$")


def drop_none(data: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` without the keys whose value is None."""
    return {k: v for k, v in data.items() if v is not None}
