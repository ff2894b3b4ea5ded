"""Binary codes with numpy only: pack/unpack, hex, integer keys, Hamming distance, flip masks.

A code of `bits` bits is stored packed, `bits // 8` uint8 per item, most significant bit first
(numpy's `packbits` order). For bits <= 64 a code is also an unsigned integer key, the packed
bytes read big-endian, so bit i of the code (0-based, left to right) is bit (bits-1-i) of the key.
"""
from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np

from .errors import ConfigError

# popcount of every byte value, for Hamming distance on packed codes
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def check_bits(bits: int) -> int:
    """Validate a code length: a positive multiple of 8, at most 1024."""
    if not isinstance(bits, (int, np.integer)) or bits <= 0 or bits % 8 or bits > 1024:
        raise ConfigError(f"bits must be a positive multiple of 8 (8, 16, 32, 64, ...), got {bits!r}")
    return int(bits)


def pack(bits_matrix: np.ndarray) -> np.ndarray:
    """Pack an (n, bits) array of 0/1 (or bool) into (n, bits // 8) uint8."""
    b = np.asarray(bits_matrix)
    if b.ndim != 2 or b.shape[1] % 8:
        raise ConfigError(f"expected an (n, bits) array with bits a multiple of 8, got shape {b.shape}")
    return np.packbits(b.astype(bool), axis=1)


def unpack(codes: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Unpack (n, bytes) uint8 into an (n, bits) uint8 array of 0/1."""
    c = np.ascontiguousarray(codes, dtype=np.uint8)
    out = np.unpackbits(c, axis=1)
    return out if bits is None else out[:, :bits]


def to_hex(codes: np.ndarray) -> list[str]:
    """Hex string per packed code, e.g. '3fa0b2c1' for 32 bits."""
    c = np.ascontiguousarray(codes, dtype=np.uint8)
    return [row.tobytes().hex() for row in c]


def from_hex(strings: list[str], bits: int) -> np.ndarray:
    """Inverse of `to_hex`."""
    nbytes = bits // 8
    out = np.zeros((len(strings), nbytes), dtype=np.uint8)
    for i, s in enumerate(strings):
        raw = bytes.fromhex(s)
        if len(raw) != nbytes:
            raise ConfigError(f"code {s!r} has {len(raw) * 8} bits, expected {bits}")
        out[i] = np.frombuffer(raw, dtype=np.uint8)
    return out


def to_keys(codes: np.ndarray) -> np.ndarray:
    """Packed codes of at most 64 bits as uint64 integer keys (big-endian byte order)."""
    c = np.ascontiguousarray(codes, dtype=np.uint8)
    n, nbytes = c.shape
    if nbytes > 8:
        raise ConfigError(f"integer keys need codes of at most 64 bits, got {nbytes * 8}")
    padded = np.zeros((n, 8), dtype=np.uint8)
    padded[:, 8 - nbytes:] = c
    return padded.view(">u8").ravel().astype(np.uint64)


def from_keys(keys: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of `to_keys`."""
    k = np.asarray(keys, dtype=np.uint64).astype(">u8")
    return k.view(np.uint8).reshape(-1, 8)[:, 8 - bits // 8:].copy()


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between every row of `a` (n, bytes) and every row of `b` (m, bytes): (n, m)."""
    a = np.ascontiguousarray(a, dtype=np.uint8)
    b = np.ascontiguousarray(b, dtype=np.uint8)
    x = np.bitwise_xor(a[:, None, :], b[None, :, :])
    return _POPCOUNT8[x].sum(axis=2, dtype=np.int32)


def hamming_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distance of each row pair (a[i], b[i]) of packed codes (n, bytes): (n,) int64."""
    x = np.bitwise_xor(np.asarray(a, np.uint8), np.asarray(b, np.uint8))
    counts = np.bitwise_count(x) if hasattr(np, "bitwise_count") else _POPCOUNT8[x]
    return counts.sum(axis=1, dtype=np.int64)


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (uint8 result): np.bitwise_count on numpy >= 2, a byte table before."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(np.asarray(words, dtype=np.uint64))
    w = np.ascontiguousarray(words, dtype=np.uint64)
    return _POPCOUNT8[w.view(np.uint8)].reshape(w.shape + (8,)).sum(axis=-1, dtype=np.uint8)


def popcount_keys(keys: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64 key (int32)."""
    return popcount(keys).astype(np.int32)


def ball_size(bits: int, radius: int) -> int:
    """Number of codes within Hamming distance `radius` of a code: sum_{i<=r} C(bits, i)."""
    return sum(comb(bits, i) for i in range(radius + 1))


def flip_masks(bits: int, radius: int) -> np.ndarray:
    """uint64 XOR masks of every code at distance exactly `radius`, in lexicographic bit order."""
    if bits > 64:
        raise ConfigError("flip masks as integer keys need codes of at most 64 bits")
    if radius == 0:
        return np.zeros(1, dtype=np.uint64)
    powers = np.uint64(1) << np.arange(bits - 1, -1, -1, dtype=np.uint64)  # bit i -> key bit bits-1-i
    idx = np.array(list(combinations(range(bits), radius)), dtype=np.int64)
    return np.bitwise_or.reduce(powers[idx], axis=1)


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of arange(s, s + n) for each (s, n), without a Python loop: a global arange
    shifted, run by run, by (the run's start - where the run begins in the output)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out = np.arange(total, dtype=np.int64)
    out += np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths), lengths)
    return out
