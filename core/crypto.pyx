"""Ciphers of wireless M-Bus, all through ``cryptography`` (OpenSSL); the key is always an argument.

* AES-128-CBC for TPL security modes 5 (IV from the header) and 7 (IV zero, derived key);
* AES-128-CTR for the Extended Link Layer;
* AES-CMAC for the mode 7 key derivation (KDF-A) and the AFL MAC;
* DES-CBC for the deprecated TPL modes 2 and 3 (``TripleDES`` with K1 = K2 = K3 is single DES).

``AesKey`` wraps one key with an ECB encryptor and decryptor that are created once and reused:
building an OpenSSL cipher context costs several microseconds, a block operation on a ready
context a fraction of one. CBC and CTR are computed here from the ECB blocks (CBC: P_i = D(C_i) xor
C_(i-1); CTR: the keystream is E(counter_i)), so one telegram costs one OpenSSL call. A key object
is not thread-safe; the gateway decodes on one trio thread.

Key material is a secret: ``repr`` and ``str`` show only ``mask_key``'s masked form.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t
from libc.string cimport memcpy

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from mbusgw.core.errors import EncodeError

cdef enum:
    AES_BLOCK = 16
    DES_BLOCK = 8


def parse_key(material) -> bytes:
    """Key material as bytes: bytes as given, or a hex string (spaces allowed)."""
    if isinstance(material, (bytes, bytearray, memoryview)):
        return bytes(material)
    if isinstance(material, str):
        text = "".join(material.split())
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise EncodeError("a key must be written as hexadecimal digits") from None
    raise EncodeError(f"a key must be bytes or a hex string, not {type(material).__name__}")


def mask_key(material) -> str:
    """A key shown without giving it away: its first and last hex digit, the rest starred.

    Also takes text that is not a valid key (a bad row of a key file), masked the same way.
    """
    if isinstance(material, (AesKey, DesKey)):
        return material.masked
    if isinstance(material, str):
        return _mask_text("".join(material.split()).upper())
    return _mask_text(bytes(material).hex().upper())


cdef str _mask_text(str text):
    cdef Py_ssize_t n = len(text)
    if n <= 4:
        return "*" * n
    return text[0] + "*" * (n - 2) + text[n - 1]


cdef bytes _xor_chain(bytes blocks, bytes iv, bytes ciphertext, Py_ssize_t size):
    """CBC from ECB: plaintext block i = D(C_i) xor C_(i-1), with C_(-1) the IV."""
    cdef Py_ssize_t n = len(blocks), i
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
    cdef const uint8_t* d = <const uint8_t*>PyBytes_AS_STRING(blocks)
    cdef const uint8_t* c = <const uint8_t*>PyBytes_AS_STRING(ciphertext)
    cdef const uint8_t* v = <const uint8_t*>PyBytes_AS_STRING(iv)
    for i in range(min(n, size)):
        o[i] = d[i] ^ v[i]
    for i in range(size, n):
        o[i] = d[i] ^ c[i - size]
    return out


cdef class _Key:
    """Key material with the block size of its cipher and an ECB decryptor made once; shown
    only masked, never pickled."""
    cdef bytes _key
    cdef object _decrypt_ecb
    cdef readonly str masked
    cdef readonly int size

    def __repr__(self):
        return f"{type(self).__name__}({self.masked})"

    def __eq__(self, other):
        return type(other) is type(self) and (<_Key>other)._key == self._key

    def __hash__(self):
        return hash((type(self), self._key))

    def __reduce__(self):
        raise TypeError("keys are not pickled")

    def material_for_storage(self) -> str:
        """The key as hex digits, for the key store to persist it: the one way key material
        leaves a key object. Never log, list or return what it gives."""
        return self._key.hex().upper()

    cdef bytes _material(self, material, int size, str name):
        key = parse_key(material)
        if len(key) != size:
            raise EncodeError(f"{name} key has {size} bytes ({2 * size} hex digits), "
                              f"not {len(key)}")
        self._key = key
        self.size = size
        self.masked = _mask_text(key.hex().upper())
        return key

    cpdef bytes cbc_decrypt(self, bytes iv, bytes data):
        """CBC decryption of whole blocks, without padding."""
        if iv is None or data is None or len(data) % self.size or len(iv) != self.size:
            raise EncodeError(f"CBC works on whole {self.size}-byte blocks with a "
                              f"{self.size}-byte IV")
        return _xor_chain(self._decrypt_ecb.update(data), iv, data, self.size)


cdef class AesKey(_Key):
    """An AES-128 key with its reusable ECB contexts."""
    cdef object _encrypt_ecb

    def __init__(self, material):
        key = self._material(material, AES_BLOCK, "an AES-128")
        cipher = Cipher(algorithms.AES(key), modes.ECB())
        self._encrypt_ecb = cipher.encryptor()
        self._decrypt_ecb = cipher.decryptor()

    cpdef bytes encrypt_blocks(self, bytes data):
        """AES-128 ECB of whole blocks (the raw block cipher)."""
        return self._encrypt_ecb.update(data)

    cpdef bytes ctr_crypt(self, bytes initial_counter, bytes data):
        """AES-128-CTR (encryption and decryption are the same): the counter block is
        incremented as a big-endian number for each block, as EN 13757-4 counts blocks."""
        cdef Py_ssize_t n = len(data)
        if len(initial_counter) != AES_BLOCK:
            raise EncodeError("the AES-CTR counter block has 16 bytes")
        if n == 0:
            return b""
        cdef Py_ssize_t nblocks = (n + AES_BLOCK - 1) // AES_BLOCK
        cdef bytes counters = PyBytes_FromStringAndSize(NULL, nblocks * AES_BLOCK)
        cdef uint8_t* ctr = <uint8_t*>PyBytes_AS_STRING(counters)
        cdef uint8_t block[16]
        cdef Py_ssize_t b, i
        memcpy(block, PyBytes_AS_STRING(initial_counter), AES_BLOCK)
        for b in range(nblocks):
            memcpy(ctr + b * AES_BLOCK, block, AES_BLOCK)
            i = AES_BLOCK - 1
            while i >= 0:
                block[i] = <uint8_t>(block[i] + 1)
                if block[i] != 0:
                    break
                i -= 1
        cdef bytes stream = self._encrypt_ecb.update(counters)
        cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
        cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
        cdef const uint8_t* s = <const uint8_t*>PyBytes_AS_STRING(stream)
        cdef const uint8_t* d = <const uint8_t*>PyBytes_AS_STRING(data)
        for i in range(n):
            o[i] = s[i] ^ d[i]
        return out

    cpdef bytes cmac(self, bytes message):
        """AES-CMAC (RFC 4493) of ``message``, 16 bytes."""
        mac = CMAC(algorithms.AES(self._key))
        mac.update(message)
        return mac.finalize()


cdef class DesKey(_Key):
    """A DES key (8 bytes) for the deprecated TPL security modes 2 and 3."""

    def __init__(self, material):
        key = self._material(material, DES_BLOCK, "a DES")
        self._decrypt_ecb = Cipher(TripleDES(key * 3), modes.ECB()).decryptor()


def make_key(material):
    """``AesKey`` for 16 bytes, ``DesKey`` for 8; key objects are returned as they are."""
    if isinstance(material, (AesKey, DesKey)):
        return material
    key = parse_key(material)
    if len(key) == DES_BLOCK:
        return DesKey(key)
    return AesKey(key)


def kdf_a(AesKey key not None, bytes message_counter, bytes meter_id):
    """Mode 7 key derivation (KDF-A, EN 13757-7 9.6): the session keys for messages *from* the
    meter, ``(Kenc, Kmac)``, each CMAC(K, constant ‖ MCR ‖ ID ‖ 0x07 × 7).

    ``message_counter`` and ``meter_id`` are the 4 bytes each as they appear on the wire.
    """
    if len(message_counter) != 4 or len(meter_id) != 4:
        raise EncodeError("KDF-A needs the 4-byte message counter and the 4-byte meter id")
    tail = message_counter + meter_id + b"\x07" * 7
    return AesKey(key.cmac(b"\x00" + tail)), key.cmac(b"\x01" + tail)


def cmac_with(bytes key, bytes message) -> bytes:
    """AES-CMAC under a raw 16-byte key (the per-message Kmac of mode 7)."""
    mac = CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()
