"""AES-CBC/CTR from cached ECB contexts against the library's own modes; CMAC, DES, masking."""

from __future__ import annotations

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from mbusgw.core.crypto import AesKey, DesKey, make_key, mask_key, parse_key
from mbusgw.core.errors import EncodeError

blocks = st.integers(0, 8).flatmap(lambda n: st.binary(min_size=16 * n, max_size=16 * n))


@pytest.mark.property
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16), blocks)
def test_cbc_matches_the_library(key: bytes, iv: bytes, data: bytes) -> None:
    reference = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor().update(data)
    assert AesKey(key).cbc_decrypt(iv, data) == reference


@pytest.mark.property
@given(
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=16, max_size=16),
    st.binary(max_size=100),
)
def test_ctr_matches_the_library(key: bytes, counter: bytes, data: bytes) -> None:
    reference = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor().update(data)
    assert AesKey(key).ctr_crypt(counter, data) == reference


def test_ctr_counter_carries_across_bytes() -> None:
    key = AesKey(bytes(16))
    counter = bytes(14) + b"\xff\xff"
    reference = Cipher(algorithms.AES(bytes(16)), modes.CTR(counter)).encryptor().update(bytes(48))
    assert key.ctr_crypt(counter, bytes(48)) == reference


def test_a_key_object_is_reusable() -> None:
    key = AesKey(bytes(range(16)))
    first = key.cbc_decrypt(bytes(16), bytes(32))
    key.ctr_crypt(bytes(16), b"abc")
    assert key.cbc_decrypt(bytes(16), bytes(32)) == first


def test_cmac_rfc_4493_example() -> None:
    key = AesKey("2b7e151628aed2a6abf7158809cf4f3c")
    message = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert key.cmac(message).hex() == "070a16b46b4d4144f79bdd9dd04a287c"
    assert key.cmac(b"").hex() == "bb1d6929e95937287fa37d129b756746"


@pytest.mark.property
@given(
    st.binary(min_size=8, max_size=8),
    st.binary(min_size=8, max_size=8),
    st.integers(0, 6).flatmap(lambda n: st.binary(min_size=8 * n, max_size=8 * n)),
)
def test_des_cbc_matches_the_library(key: bytes, iv: bytes, data: bytes) -> None:
    reference = Cipher(TripleDES(key * 3), modes.CBC(iv)).decryptor().update(data)
    assert DesKey(key).cbc_decrypt(iv, data) == reference


def test_key_parsing_and_errors() -> None:
    assert parse_key("00 01 02 03 04 05 06 07") == bytes(range(8))
    assert isinstance(make_key("00" * 16), AesKey)
    assert isinstance(make_key("00" * 8), DesKey)
    with pytest.raises(EncodeError):
        AesKey("00" * 15)
    with pytest.raises(EncodeError):
        AesKey("zz" * 16)
    with pytest.raises(EncodeError):
        DesKey(bytes(16))
    with pytest.raises(EncodeError):
        AesKey(bytes(16)).cbc_decrypt(bytes(16), bytes(15))


def test_keys_never_show_themselves() -> None:
    secret = "0102030405060708090A0B0C0D0E0F11"
    key = AesKey(secret)
    for text in (repr(key), str(key), key.masked, mask_key(key), mask_key(secret)):
        assert secret not in text.upper()
        assert "0203" not in text
    assert mask_key(secret) == "0" + "*" * 30 + "1"
    assert mask_key("ab") == "**"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(key)
    assert key == AesKey(bytes.fromhex(secret))
    assert len({key, AesKey(secret)}) == 1
