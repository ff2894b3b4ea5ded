"""semhash.codes: packing, hex, integer keys, Hamming distance, popcount, balls and flip masks."""
from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pytest

from semhash.codes import (ball_size, check_bits, flip_masks, from_hex, from_keys, hamming, pack,
                           popcount_keys, to_hex, to_keys, unpack)
from semhash.errors import ConfigError

BITS = [8, 16, 24, 32, 48, 64, 128]


def random_bits(n: int, bits: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, size=(n, bits), dtype=np.uint8)


@pytest.mark.parametrize("bits", BITS)
def test_pack_unpack_round_trip(bits):
    b = random_bits(50, bits, seed=bits)
    packed = pack(b)
    assert packed.shape == (50, bits // 8)
    assert packed.dtype == np.uint8
    assert np.array_equal(unpack(packed), b)
    assert np.array_equal(unpack(packed, bits), b)
    assert np.array_equal(pack(b.astype(bool)), packed)  # bool input packs the same


def test_pack_is_most_significant_bit_first():
    b = np.zeros((1, 16), dtype=np.uint8)
    b[0, 0] = 1   # first bit -> top bit of the first byte
    b[0, 15] = 1  # last bit -> low bit of the second byte
    assert pack(b).tolist() == [[0x80, 0x01]]


@pytest.mark.parametrize("shape", [(16,), (3, 12), (2, 3, 8)])
def test_pack_rejects_bad_shapes(shape):
    with pytest.raises(ConfigError, match="expected an \\(n, bits\\) array"):
        pack(np.zeros(shape, dtype=np.uint8))


def test_unpack_truncates_to_bits():
    packed = pack(random_bits(4, 16))
    assert unpack(packed, 8).shape == (4, 8)
    assert np.array_equal(unpack(packed, 8), unpack(packed)[:, :8])


@pytest.mark.parametrize("bits", BITS)
def test_hex_round_trip(bits):
    packed = pack(random_bits(30, bits, seed=bits + 1))
    strings = to_hex(packed)
    assert all(len(s) == bits // 4 for s in strings)
    assert all(s == s.lower() and set(s) <= set("0123456789abcdef") for s in strings)
    assert np.array_equal(from_hex(strings, bits), packed)


def test_hex_known_value():
    assert to_hex(np.array([[0x3F, 0xA0, 0xB2, 0xC1]], dtype=np.uint8)) == ["3fa0b2c1"]
    assert from_hex(["3fa0b2c1"], 32).tolist() == [[0x3F, 0xA0, 0xB2, 0xC1]]


def test_from_hex_wrong_length():
    with pytest.raises(ConfigError) as e:
        from_hex(["abcd"], 32)
    assert str(e.value) == "code 'abcd' has 16 bits, expected 32"


@pytest.mark.parametrize("bits", [8, 16, 24, 32, 40, 48, 56, 64])
def test_keys_round_trip(bits):
    packed = pack(random_bits(40, bits, seed=bits + 2))
    keys = to_keys(packed)
    assert keys.dtype == np.uint64 and keys.shape == (40,)
    assert np.array_equal(from_keys(keys, bits), packed)
    assert all(int(k) < 2 ** bits for k in keys)


@pytest.mark.parametrize("bits", [8, 16, 32, 64])
def test_key_bit_order(bits):
    """Bit i of the code (left to right) is bit bits-1-i of the key: bit 0 is the key's top used bit."""
    for i in range(bits):
        b = np.zeros((1, bits), dtype=np.uint8)
        b[0, i] = 1
        assert int(to_keys(pack(b))[0]) == 1 << (bits - 1 - i)
    # so every key equals the code read as a binary number, and key order is lexicographic order
    b = random_bits(25, bits, seed=bits + 3)
    keys = to_keys(pack(b))
    assert [int(k) for k in keys] == [int("".join(map(str, row)), 2) for row in b]
    lex = sorted(range(len(b)), key=lambda r: "".join(map(str, b[r])))
    assert list(np.argsort(keys, kind="stable")) == lex


def test_to_keys_rejects_long_codes():
    with pytest.raises(ConfigError, match="at most 64 bits, got 72"):
        to_keys(np.zeros((2, 9), dtype=np.uint8))


@pytest.mark.parametrize("bits", [8, 32, 64, 128])
def test_hamming_matches_brute_force(bits):
    a = random_bits(7, bits, seed=1)
    b = random_bits(5, bits, seed=2)
    d = hamming(pack(a), pack(b))
    assert d.shape == (7, 5)
    expected = np.array([[sum(int(x != y) for x, y in zip(ra, rb)) for rb in b] for ra in a])
    assert np.array_equal(d, expected)
    assert np.array_equal(hamming(pack(a), pack(a)).diagonal(), np.zeros(7))


def test_hamming_extremes():
    zeros = np.zeros((1, 8), dtype=np.uint8)
    ones = np.full((1, 8), 255, dtype=np.uint8)
    assert hamming(zeros, ones).tolist() == [[64]]


def test_popcount_keys():
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 2 ** 63, size=100, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 100).astype(np.uint64)
    keys = np.concatenate([keys, np.array([0, 1, 2 ** 64 - 1, 2 ** 63], dtype=np.uint64)])
    got = popcount_keys(keys)
    assert got.tolist() == [bin(int(k)).count("1") for k in keys]
    assert got[-4:].tolist() == [0, 1, 64, 1]
    assert popcount_keys(keys[:12].reshape(3, 4)).shape == (3, 4)
    assert np.array_equal(popcount_keys(keys[:12].reshape(3, 4)).ravel(), got[:12])


def test_popcount_matches_hamming_to_zero():
    packed = pack(random_bits(20, 64, seed=9))
    assert np.array_equal(popcount_keys(to_keys(packed)), hamming(packed, np.zeros((1, 8), np.uint8))[:, 0])


@pytest.mark.parametrize("bits,radius,size", [(32, 2, 529), (64, 3, 43745), (16, 0, 1), (8, 8, 256), (32, 1, 33)])
def test_ball_size(bits, radius, size):
    assert ball_size(bits, radius) == size


@pytest.mark.parametrize("bits,radius", [(8, 1), (16, 2), (32, 2), (64, 1), (64, 2), (24, 3)])
def test_flip_masks(bits, radius):
    masks = flip_masks(bits, radius)
    assert masks.dtype == np.uint64
    assert len(masks) == comb(bits, radius)
    assert set(popcount_keys(masks).tolist()) == {radius}
    assert len(np.unique(masks)) == len(masks)
    assert all(int(m) < 2 ** bits for m in masks)


def test_flip_masks_order_and_meaning():
    masks = flip_masks(8, 2)
    # lexicographic over bit positions: (0,1), (0,2), ... and bit 0 is the key's top bit
    expected = [(1 << (7 - i)) | (1 << (7 - j)) for i, j in combinations(range(8), 2)]
    assert [int(m) for m in masks] == expected
    # XOR with a mask gives a code at exactly that Hamming distance
    code = pack(random_bits(1, 32, seed=4))
    key = to_keys(code)[0]
    neighbours = from_keys(np.bitwise_xor(key, flip_masks(32, 3)), 32)
    assert set(hamming(code, neighbours)[0].tolist()) == {3}


def test_flip_masks_radius_zero_and_errors():
    assert flip_masks(32, 0).tolist() == [0]
    with pytest.raises(ConfigError, match="at most 64 bits"):
        flip_masks(128, 1)


@pytest.mark.parametrize("bits", [8, 16, 32, 64, 128, 1024, np.int64(32)])
def test_check_bits_accepts(bits):
    assert check_bits(bits) == int(bits)
    assert type(check_bits(bits)) is int


@pytest.mark.parametrize("bits", [0, -8, 4, 12, 33, 1032, 2048, 8.0, "8", None, True])
def test_check_bits_rejects(bits):
    with pytest.raises(ConfigError) as e:
        check_bits(bits)
    assert str(e.value) == f"bits must be a positive multiple of 8 (8, 16, 32, 64, ...), got {bits!r}"
