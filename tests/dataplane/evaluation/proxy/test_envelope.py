"""The data plane's envelope: a data key per secret, bound to its row, under a configured
key (or the embedded key file)."""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from apiary.dataplane.evaluation.proxy.envelope import KEY_FILE, Envelope, envelope_from_settings
from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings


def _key() -> bytes:
    return os.urandom(32)


def test_a_secret_opens_only_with_its_key_and_its_context() -> None:
    envelope = Envelope(_key())
    sealed = envelope.seal(b"sk-the-secret", context="row-1")
    assert b"sk-the-secret" not in (sealed.ciphertext + sealed.wrapped_key).encode()
    assert envelope.open(sealed, context="row-1") == b"sk-the-secret"
    with pytest.raises(ConfigurationError, match="does not decrypt"):
        envelope.open(sealed, context="row-2")
    # Two seals of one secret share nothing: a fresh data key and nonces each time.
    again = envelope.seal(b"sk-the-secret", context="row-1")
    assert again.ciphertext != sealed.ciphertext
    assert again.wrapped_key != sealed.wrapped_key
    # A data key moved from another row does not open this row's secret.
    other = envelope.seal(b"sk-other", context="row-1")
    with pytest.raises(ConfigurationError):
        envelope.open(replace(sealed, wrapped_key=other.wrapped_key), context="row-1")
    with pytest.raises(ConfigurationError):
        envelope.open(replace(sealed, ciphertext=_flip_a_bit(sealed.ciphertext)), context="row-1")


def _flip_a_bit(text: str, index: int = -1) -> str:
    """The sealed text with one bit of its last stored byte changed (the tag's, for a
    ciphertext). Editing the base64 text instead can touch only its padding bits."""
    version, _, encoded = text.partition(":")
    raw = bytearray(base64.urlsafe_b64decode(encoded))
    raw[index] ^= 0x01
    return f"{version}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"


def test_a_tampered_tag_never_opens_even_when_the_base64_edit_is_padding() -> None:
    """CI once failed here: the test changed the character before the base64 padding, whose
    low bits are padding, so the decoded bytes (and the secret) were unchanged. Each byte of
    the nonce, the ciphertext and the tag now has a bit flipped in turn."""
    envelope = Envelope(_key())
    for attempt in range(20):
        sealed = envelope.seal(os.urandom(attempt + 1), context="row-1")
        size = len(base64.urlsafe_b64decode(sealed.ciphertext.partition(":")[2]))
        for index in range(size):
            with pytest.raises(ConfigurationError, match="does not decrypt"):
                envelope.open(replace(sealed, ciphertext=_flip_a_bit(sealed.ciphertext, index)),
                              context="row-1")


def test_another_envelope_key_is_named_not_guessed() -> None:
    sealed = Envelope(_key()).seal(b"secret", context="c")
    stranger = Envelope(_key())
    with pytest.raises(ConfigurationError) as caught:
        stranger.open(sealed, context="c")
    assert caught.value.context["sealed_key_id"] == sealed.key_id
    assert caught.value.context["configured_key_id"] == stranger.key_id
    assert b"secret" not in str(caught.value).encode()


def test_the_configured_key_is_used_and_checked(tmp_path: Path) -> None:
    raw = _key()
    settings = ApiarySettings(data_dir=tmp_path,
                              dp_envelope_key=base64.urlsafe_b64encode(raw).decode())
    assert envelope_from_settings(settings).key_id == Envelope(raw).key_id
    assert not (tmp_path / KEY_FILE).exists()
    for bad in ("not base64!", base64.urlsafe_b64encode(b"short").decode()):
        with pytest.raises(ConfigurationError, match="APIARY_DP_ENVELOPE_KEY"):
            envelope_from_settings(ApiarySettings(data_dir=tmp_path, dp_envelope_key=bad))


def test_the_embedded_key_file_is_private_and_stable(tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path)
    first = envelope_from_settings(settings)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert envelope_from_settings(settings).key_id == first.key_id
    assert list(tmp_path.iterdir()) == [path]  # nothing left over from writing it


def test_a_shared_dpdb_requires_a_configured_key(tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path,
                              dp_database_url="postgresql+psycopg://u@db:5432/dp")
    with pytest.raises(ConfigurationError, match="APIARY_DP_ENVELOPE_KEY must be set"):
        envelope_from_settings(settings)
