#!/usr/bin/env python3
"""An independent reader of CarbonStore user files (format versions 1, 2 and 3).

Written from docs/FORMAT.md alone, as a check that the document specifies the format completely.
Standard library only; zstd sections (version 3) are decompressed by the system's libzstd
(libzstd.so.1) through ctypes.

    python3 scripts/read_cstore.py FILE

prints the decoded record in its JSON form (docs/FORMAT.md section 12) on standard output and
exits 0; for a damaged file it prints one line on standard error,

    read_cstore: <kind> at offset <n>[ in section '<name>' (tag <t>)]: <detail>

and exits 5. A torn tail of a version-2 file (section 13.4) is not an error: the record is the one
before it, and one line on standard error says where the ignored tail starts and why.
"""

import ctypes
import ctypes.util
import struct
import sys
import zlib

MAGIC = b"\x89CST\r\n\x1a\n"
FRAME_MARKER = b"\x89CFR"
MAX_FILE_SIZE = 8 * 1024 * 1024
MAX_DECODED_SIZE = 16 * 1024 * 1024
MAX_COMPRESSION_RATIO = 128
MAX_ITEM_COUNT = 250_000
MAX_USER_ID = 65_535
FRAME_MIN = 68
MASK64 = (1 << 64) - 1

SECTION_NAMES = {1: "transactions", 2: "responses", 3: "preferences", 4: "footprints", 5: "savings"}

# ISO 4217 minor units for the codes whose minor unit is not 2 (FORMAT.md does not give this table;
# see the report of the independent reader).
MINOR_UNITS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}


# ---------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78


def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data):
    c = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283
assert crc32c(bytes(32)) == 0x8A9136AA


# ---------------------------------------------------------------------------------------------
# Errors


class FormatError(Exception):
    def __init__(self, kind, offset, detail, tag=None):
        super().__init__(detail)
        self.kind, self.offset, self.detail, self.tag = kind, offset, detail, tag

    def line(self):
        where = ""
        if self.tag is not None:
            where = " in section '%s' (tag %d)" % (SECTION_NAMES.get(self.tag, "unknown"), self.tag)
        return "%s at offset %d%s: %s" % (self.kind, self.offset, where, self.detail)


def to_signed(u):
    return u - (1 << 64) if u & (1 << 63) else u


def unzigzag(u):
    return to_signed((u >> 1) ^ (MASK64 if u & 1 else 0))


class Totals:
    """Running totals of section 8: payload bytes and items, over the snapshot and valid frames."""

    def __init__(self):
        self.decoded = 0
        self.items = 0

    def add_decoded(self, n, offset, tag, what):
        self.decoded += n
        if self.decoded > MAX_DECODED_SIZE:
            raise FormatError(
                "limitExceeded", offset,
                "%s: payloads add up to %d bytes, more than maxDecodedSize %d"
                % (what, self.decoded, MAX_DECODED_SIZE), tag)


# ---------------------------------------------------------------------------------------------
# Payload reading (section 5)


class Payload:
    """Reads one section payload or frame part body. `file_offset` is the file offset of byte 0 of
    `buf`; for an inflated section `inflated_at` is the offset of the section body, and errors
    carry that offset with the position in the inflated bytes in their detail (section 9)."""

    def __init__(self, buf, file_offset, tag, totals, inflated_at=None, prefix=""):
        self.buf, self.base, self.tag, self.totals = buf, file_offset, tag, totals
        self.inflated_at, self.prefix = inflated_at, prefix
        self.pos = 0

    def fail(self, kind, detail, at=None):
        at = self.pos if at is None else at
        if self.inflated_at is not None:
            raise FormatError(kind, self.inflated_at,
                              self.prefix + detail + " (at byte %d of the inflated payload)" % at, self.tag)
        raise FormatError(kind, self.base + at, self.prefix + detail, self.tag)

    def left(self):
        return len(self.buf) - self.pos

    def u8(self):
        if self.left() < 1:
            self.fail("truncated", "payload ends inside a 1-byte value")
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def u64(self):
        if self.left() < 8:
            self.fail("truncated", "payload ends inside an 8-byte value")
        v = struct.unpack_from("<Q", self.buf, self.pos)[0]
        self.pos += 8
        return v

    def varint(self):
        start = self.pos
        value = 0
        for i in range(10):
            if self.pos >= len(self.buf):
                self.fail("truncated", "payload ends inside a varint", start)
            b = self.buf[self.pos]
            self.pos += 1
            if i == 9 and b > 1:
                self.fail("malformed", "varint is above 2^64-1", start)
            value |= (b & 0x7F) << (7 * i)
            if b & 0x80 == 0:
                if b == 0 and i > 0:
                    self.fail("malformed", "varint is overlong (not its minimal form)", start)
                return value
        self.fail("malformed", "varint is longer than 10 bytes", start)

    def zigzag(self):
        return unzigzag(self.varint())

    def count(self, smallest, what):
        start = self.pos
        n = self.varint()
        if n * smallest > self.left():
            self.fail("lengthBeyondEnd",
                      "%s count %d needs at least %d bytes, %d left" % (what, n, n * smallest, self.left()),
                      start)
        self.totals.items += n
        if self.totals.items > MAX_ITEM_COUNT:
            self.fail("limitExceeded", "%s count %d takes the items to %d, more than maxItemCount %d"
                      % (what, n, self.totals.items, MAX_ITEM_COUNT), start)
        return n

    def raw_string(self, n, start):
        if n > self.left():
            self.fail("lengthBeyondEnd", "string of %d bytes, %d left" % (n, self.left()), start)
        b = bytes(self.buf[self.pos:self.pos + n])
        try:
            s = b.decode("utf-8")
        except UnicodeDecodeError:
            self.fail("invalidValue", "string is not valid UTF-8")
        self.pos += n
        return s

    def string(self):
        start = self.pos
        return self.raw_string(self.varint(), start)

    def optstring(self):
        start = self.pos
        n = self.varint()
        if n == 0:
            return None
        return self.raw_string(n - 1, start)

    def dictionary(self):
        n = self.count(1, "dictionary")
        return [self.string() for _ in range(n)]

    def ref(self, d, what):
        start = self.pos
        i = self.varint()
        if i >= len(d):
            self.fail("malformed", "%s reference %d is outside the dictionary of %d" % (what, i, len(d)), start)
        return d[i]

    def optref(self, d, what):
        start = self.pos
        i = self.varint()
        if i == 0:
            return None
        if i - 1 >= len(d):
            self.fail("malformed", "%s reference %d is outside the dictionary of %d" % (what, i - 1, len(d)),
                      start)
        return d[i - 1]

    def deltas(self, n):
        prev, out = 0, []
        for _ in range(n):
            prev = to_signed((prev + self.zigzag()) & MASK64)
            out.append(prev)
        return out

    def currency(self, d):
        start = self.pos
        c = self.ref(d, "currency")
        if len(c) != 3 or not all("A" <= ch <= "Z" for ch in c):
            self.fail("invalidValue", "currency %r is not three letters A-Z" % c, start)
        return c

    def end(self):
        if self.left() != 0:
            self.fail("trailingBytes", "%d bytes left over after the payload" % self.left())


def wrap_add(a, b):
    return to_signed((a + b) & MASK64)


def read_transactions(p):
    n = p.count(10, "transaction")
    d = p.dictionary()
    rows = [{"id": p.string()} for _ in range(n)]
    for r, t in zip(rows, p.deltas(n)):
        r["time"] = t
    for r in rows:
        r["amount"] = p.zigzag()
    for r in rows:
        r["currency"] = p.currency(d)
    for r in rows:
        r["merchant"] = p.optref(d, "merchant")
    for r in rows:
        start = p.pos
        v = p.varint()
        if v > 10000:
            p.fail("invalidValue", "mcc %d is above 9999" % (v - 1), start)
        r["mcc"] = None if v == 0 else v - 1
    for r in rows:
        r["category"] = p.optref(d, "category")
    for r in rows:
        r["accountId"] = p.optref(d, "account id")
    for r in rows:
        r["description"] = p.optstring()
    for r in rows:
        start = p.pos
        m = p.count(2, "metadata")
        if m > len(d):
            p.fail("malformed", "%d metadata entries but only %d dictionary strings" % (m, len(d)), start)
        meta = {}
        for _ in range(m):
            kstart = p.pos
            k = p.ref(d, "metadata key")
            v = p.ref(d, "metadata value")
            if k in meta:
                p.fail("malformed", "metadata key %r repeated" % k, kstart)
            meta[k] = v
        r["metadata"] = meta
    return rows


def read_responses(p):
    n = p.count(4, "response")
    rows, prev = [], 0
    for _ in range(n):
        q = p.string()
        prev = wrap_add(prev, p.zigzag())
        kstart = p.pos
        kind = p.u8()
        if kind == 0:
            a = ("text", p.string())
        elif kind == 1:
            a = ("number", p.u64())
        elif kind == 2:
            bstart = p.pos
            b = p.u8()
            if b > 1:
                p.fail("malformed", "boolean answer %d is not 0 or 1" % b, bstart)
            a = ("boolean", b == 1)
        elif kind == 3:
            c = p.count(1, "choice")
            a = ("choices", [p.string() for _ in range(c)])
        else:
            p.fail("malformed", "answer kind %d is unknown" % kind, kstart)
        rows.append({"questionId": q, "answeredAt": prev, "answer": a})
    return rows


def read_preferences(p):
    n = p.count(3, "preference")
    prefs, prev = {}, 0
    for _ in range(n):
        kstart = p.pos
        k = p.string()
        v = p.string()
        prev = wrap_add(prev, p.zigzag())
        if k in prefs:
            p.fail("malformed", "preference key %r repeated" % k, kstart)
        prefs[k] = {"value": v, "updatedAt": prev}
    return prefs


def read_footprints(p):
    n = p.count(7, "footprint")
    d = p.dictionary()
    rows = [{"id": p.string()} for _ in range(n)]
    for r in rows:
        r["transactionId"] = p.optstring()
    for r in rows:
        r["co2e"] = p.zigzag()
    for r in rows:
        r["category"] = p.ref(d, "category")
    for r in rows:
        r["methodology"] = p.ref(d, "methodology")
    for r, t in zip(rows, p.deltas(n)):
        r["calculatedAt"] = t
    prev = 0
    for r in rows:
        start = p.pos
        has = p.varint()
        if has == 0:
            r["period"] = None
        elif has == 1:
            prev = wrap_add(prev, p.zigzag())
            r["period"] = (prev, wrap_add(prev, p.zigzag()))
        else:
            p.fail("malformed", "period presence %d is not 0 or 1" % has, start)
    return rows


def read_savings(p):
    n = p.count(7, "saving")
    d = p.dictionary()
    rows = [{"id": p.string()} for _ in range(n)]
    for r in rows:
        r["actionId"] = p.ref(d, "action id")
    for r in rows:
        r["co2e"] = p.zigzag()
    for r in rows:
        start = p.pos
        i = p.varint()
        if i == 0:
            r["money"] = None
        else:
            if i - 1 >= len(d):
                p.fail("malformed", "currency reference %d is outside the dictionary of %d" % (i - 1, len(d)),
                       start)
            c = d[i - 1]
            if len(c) != 3 or not all("A" <= ch <= "Z" for ch in c):
                p.fail("invalidValue", "currency %r is not three letters A-Z" % c, start)
            r["money"] = (p.zigzag(), c)
    prev = 0
    for r in rows:
        prev = wrap_add(prev, p.zigzag())
        r["period"] = (prev, wrap_add(prev, p.zigzag()))
    for r, t in zip(rows, p.deltas(n)):
        r["recordedAt"] = t
    return rows


READERS = {1: read_transactions, 2: read_responses, 3: read_preferences, 4: read_footprints, 5: read_savings}
ARRAYS = {1: "transactions", 2: "responses", 4: "footprints", 5: "savings"}


# ---------------------------------------------------------------------------------------------
# File reading (sections 1, 3, 4, 13)


class Result:
    pass


def need(data, pos, n, what):
    if len(data) - pos < n:
        raise FormatError("truncated", len(data), "file ends inside %s (needs %d bytes at %d, %d left)"
                          % (what, n, pos, len(data) - pos))


def read_file(data):
    if len(data) > MAX_FILE_SIZE:
        raise FormatError("limitExceeded", 0, "file is %d bytes, more than maxFileSize %d"
                          % (len(data), MAX_FILE_SIZE))
    for i in range(min(len(data), len(MAGIC))):
        if data[i] != MAGIC[i]:
            raise FormatError("badMagic", i, "the file does not start with the CarbonStore magic %s" % MAGIC.hex(" "))
    if len(data) < 10:
        raise FormatError("truncated", len(data), "%d bytes, too short for a header" % len(data))
    version = struct.unpack_from("<H", data, 8)[0]
    if version not in (1, 2, 3):
        raise FormatError("unsupportedVersion", 8, "format version %d (this reader reads 1 to 3)" % version)
    fixed = 60 if version >= 2 else 44
    fields = [(10, 2, "flags")] + ([(12, 8, "file id"), (20, 8, "file id")] if version >= 2 else [])
    for off, size, name in fields + [(fixed - 32 + o, n, f) for o, n, f in
                                     [(0, 8, "revision"), (8, 8, "createdAt"), (16, 8, "updatedAt"),
                                      (24, 4, "section count"), (28, 4, "user id length")]]:
        if len(data) < off + size:
            raise FormatError("truncated", off, "%s needs %d bytes, %d left" % (name, size, len(data) - off))
    flags = struct.unpack_from("<H", data, 10)[0]
    if flags != 0:
        raise FormatError("unsupportedFeature", 10, "file flags 0x%04x are not defined" % flags)
    if version >= 2:
        file_id = bytes(data[12:28])
        revision, created, updated, nsec, idlen = struct.unpack_from("<QqqII", data, 28)
    else:
        file_id = None
        revision, created, updated, nsec, idlen = struct.unpack_from("<QqqII", data, 12)
    if idlen > MAX_USER_ID:
        raise FormatError("limitExceeded", fixed - 4, "user id of %d bytes, more than %d" % (idlen, MAX_USER_ID))
    if idlen + 4 > len(data) - fixed:
        raise FormatError("lengthBeyondEnd", fixed - 4, "user id of %d bytes and the header CRC need %d bytes, %d left"
                          % (idlen, idlen + 4, len(data) - fixed))
    hend = fixed + idlen
    stored = struct.unpack_from("<I", data, hend)[0]
    computed = crc32c(data[:hend])
    if stored != computed:
        raise FormatError("checksumMismatch", hend, "header: stored 0x%08x, computed 0x%08x" % (stored, computed))
    try:
        user = bytes(data[fixed:hend]).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("invalidValue", fixed, "user id is not valid UTF-8")

    totals = Totals()
    rec = {"userId": user, "revision": revision, "createdAt": created, "updatedAt": updated,
           "transactions": [], "responses": [], "preferences": {}, "footprints": [], "savings": []}
    seen = set()
    pos = hend + 4
    for _ in range(nsec):
        need(data, pos, 8, "a section header")
        tag, sflags, length = struct.unpack_from("<HHI", data, pos)
        if length + 4 > len(data) - pos - 8:
            raise FormatError("lengthBeyondEnd", pos + 4, "section body of %d bytes and its CRC need %d bytes, %d left"
                              % (length, length + 4, len(data) - pos - 8), tag)
        body_at = pos + 8
        crc_at = body_at + length
        stored = struct.unpack_from("<I", data, crc_at)[0]
        computed = crc32c(data[pos:crc_at])
        if stored != computed:
            raise FormatError("checksumMismatch", crc_at, "stored 0x%08x, computed 0x%08x" % (stored, computed), tag)
        if tag == 0:
            raise FormatError("malformed", pos, "section tag 0 is reserved", tag)
        known = tag in SECTION_NAMES
        if not known and tag >= 0x8000:
            raise FormatError("unsupportedFeature", pos, "critical section tag 0x%04x is unknown" % tag, tag)
        defined = 3 if version >= 3 else 1
        if known and (sflags & ~defined or sflags & 3 == 3):
            raise FormatError("unsupportedFeature", pos + 2, "section flags 0x%04x are not defined" % sflags, tag)
        body = data[body_at:crc_at]
        # Section 4: the payload's size (rawLength for a compressed section) counts towards
        # maxDecodedSize before a second section of the same tag is refused.
        compressed = known and sflags & 3
        if compressed:
            if len(body) < 4:
                raise FormatError("malformed", body_at, "compressed body of %d bytes has no rawLength" % len(body), tag)
            totals.add_decoded(struct.unpack_from("<I", body, 0)[0], pos, tag, "compressed section")
        else:
            totals.add_decoded(length, pos, tag, "section payload" if known else "preserved section")
        if known and tag in seen:
            raise FormatError("duplicateSection", pos, "section appears twice", tag)
        seen.add(tag)
        if not known:
            pass
        elif compressed:
            payload = (inflate if sflags & 1 else unzstd)(body, body_at, tag, totals)
            p = Payload(payload, body_at, tag, totals, inflated_at=body_at)
            store(rec, tag, READERS[tag](p))
            p.end()
        else:
            p = Payload(body, body_at, tag, totals)
            store(rec, tag, READERS[tag](p))
            p.end()
        pos = crc_at + 4

    res = Result()
    res.version, res.file_id, res.snapshot_end = version, file_id, pos
    res.frames, res.valid_length, res.ignored_reason = 0, pos, None
    if version == 1:
        if pos != len(data):
            raise FormatError("trailingBytes", pos, "%d bytes after the last section of a version-1 file"
                              % (len(data) - pos))
        res.record = rec
        return res

    last_id = file_id
    while True:
        left = len(data) - pos
        if left < 8 or data[pos:pos + 4] != FRAME_MARKER:
            reason = "no frame marker" if left >= 4 and data[pos:pos + 4] != FRAME_MARKER else "too few bytes for a frame"
            if left == 0:
                reason = None
            break
        L = struct.unpack_from("<I", data, pos + 4)[0]
        if L < FRAME_MIN or L > left:
            reason = "frame length %d is below %d or beyond the %d bytes left" % (L, FRAME_MIN, left)
            break
        stored = struct.unpack_from("<I", data, pos + L - 4)[0]
        if stored != crc32c(data[pos:pos + L - 4]):
            reason = "frame CRC does not match"
            break
        if bytes(data[pos + 8:pos + 24]) != last_id:
            reason = "frame is not chained to the previous id"
            break
        res.frames += 1
        apply_frame(data, pos, L, rec, totals, res.frames)
        last_id = bytes(data[pos + L - 20:pos + L - 4])
        pos += L
    res.valid_length = pos
    res.ignored_reason = reason
    res.record = rec
    return res


def inflate(body, body_at, tag, totals):
    # The caller has checked the body holds a rawLength and counted it towards maxDecodedSize.
    raw_len = struct.unpack_from("<I", body, 0)[0]
    stream = bytes(body[4:])
    if raw_len == 0:
        raise FormatError("malformed", body_at, "compressed section with rawLength 0", tag)
    if raw_len > 1032 * len(stream):
        raise FormatError("decompressionFailed", body_at, "rawLength %d is more than deflate can give from %d bytes"
                          % (raw_len, len(stream)), tag)
    if raw_len > MAX_COMPRESSION_RATIO * len(stream):
        raise FormatError("limitExceeded", body_at, "rawLength %d is more than %d times the %d stream bytes"
                          % (raw_len, MAX_COMPRESSION_RATIO, len(stream)), tag)
    stream_at = body_at + 4
    d = zlib.decompressobj()
    try:
        out = d.decompress(stream, raw_len)
    except zlib.error as e:
        raise FormatError("decompressionFailed", stream_at, "the zlib stream is corrupt (%s)" % e, tag)
    if not d.eof:
        more = len(out) == raw_len
        raise FormatError("decompressionFailed", stream_at,
                          "the stream inflates to more than rawLength %d bytes" % raw_len if more else
                          "the zlib stream is cut short (%d bytes of rawLength %d)" % (len(out), raw_len), tag)
    if len(out) != raw_len:
        raise FormatError("decompressionFailed", stream_at, "inflated to %d bytes, rawLength %d" % (len(out), raw_len), tag)
    if d.unused_data:
        at = stream_at + len(stream) - len(d.unused_data)
        raise FormatError("trailingBytes", at, "%d bytes after the end of the zlib stream" % len(d.unused_data), tag)
    return out


_zstd = None


def zstd_library():
    """libzstd through ctypes, or None where it is not installed."""
    global _zstd
    if _zstd is None:
        lib = None
        for name in ("libzstd.so.1", ctypes.util.find_library("zstd")):
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                pass
        if lib is not None:
            size_t, vp = ctypes.c_size_t, ctypes.c_void_p
            lib.ZSTD_isError.argtypes, lib.ZSTD_isError.restype = [size_t], ctypes.c_uint
            lib.ZSTD_getErrorName.argtypes, lib.ZSTD_getErrorName.restype = [size_t], ctypes.c_char_p
            lib.ZSTD_findFrameCompressedSize.argtypes = [vp, size_t]
            lib.ZSTD_findFrameCompressedSize.restype = size_t
            lib.ZSTD_getFrameContentSize.argtypes = [vp, size_t]
            lib.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
            lib.ZSTD_getDictID_fromFrame.argtypes = [vp, size_t]
            lib.ZSTD_getDictID_fromFrame.restype = ctypes.c_uint
            lib.ZSTD_decompress.argtypes, lib.ZSTD_decompress.restype = [vp, size_t, vp, size_t], size_t
        _zstd = lib or False
    return _zstd or None


def unzstd(body, body_at, tag, totals):
    # The caller has checked the body holds a rawLength and counted it towards maxDecodedSize.
    raw_len = struct.unpack_from("<I", body, 0)[0]
    frame = bytes(body[4:])
    if raw_len == 0:
        raise FormatError("malformed", body_at, "compressed section with rawLength 0", tag)
    if raw_len > MAX_COMPRESSION_RATIO * len(frame):
        raise FormatError("limitExceeded", body_at, "rawLength %d is more than %d times the %d frame bytes"
                          % (raw_len, MAX_COMPRESSION_RATIO, len(frame)), tag)
    frame_at = body_at + 4
    if frame[:4] != b"\x28\xb5\x2f\xfd":
        raise FormatError("decompressionFailed", frame_at, "the body does not start a zstd frame", tag)
    lib = zstd_library()
    if lib is None:
        raise FormatError("unsupportedFeature", body_at - 8, "a zstd section needs libzstd, which is not installed", tag)
    extent = lib.ZSTD_findFrameCompressedSize(frame, len(frame))
    if lib.ZSTD_isError(extent):
        raise FormatError("decompressionFailed", frame_at, "the zstd frame is corrupt or cut short (%s)"
                          % lib.ZSTD_getErrorName(extent).decode(), tag)
    if extent != len(frame):
        raise FormatError("trailingBytes", frame_at + extent, "%d bytes after the end of the zstd frame"
                          % (len(frame) - extent), tag)
    if lib.ZSTD_getDictID_fromFrame(frame, len(frame)) != 0:
        raise FormatError("decompressionFailed", frame_at, "the zstd frame needs a dictionary", tag)
    declared = lib.ZSTD_getFrameContentSize(frame, len(frame))
    if declared != (1 << 64) - 1 and declared != raw_len:
        raise FormatError("decompressionFailed", frame_at, "the frame declares %d bytes, rawLength %d"
                          % (declared, raw_len), tag)
    out = ctypes.create_string_buffer(raw_len)
    n = lib.ZSTD_decompress(out, raw_len, frame, len(frame))
    if lib.ZSTD_isError(n):
        raise FormatError("decompressionFailed", frame_at, "the zstd frame is corrupt or gives more than rawLength "
                          "%d bytes (%s)" % (raw_len, lib.ZSTD_getErrorName(n).decode()), tag)
    if n != raw_len:
        raise FormatError("decompressionFailed", frame_at, "decompressed to %d bytes, rawLength %d" % (n, raw_len), tag)
    return out.raw


def store(rec, tag, value):
    if tag == 3:
        rec["preferences"] = value
    else:
        rec[ARRAYS[tag]] = value


def apply_frame(data, pos, L, rec, totals, number):
    prefix = "frame %d: " % number
    revision, created, updated = struct.unpack_from("<Qqq", data, pos + 24)
    if revision <= rec["revision"]:
        raise FormatError("malformed", pos + 24, prefix + "revision %d does not increase on %d"
                          % (revision, rec["revision"]))
    p = pos + 48
    end = pos + L - 20
    last_tag = 0
    while p < end:
        if end - p < 6:
            raise FormatError("truncated", p, prefix + "part header cut by the frame's trailer")
        tag, length = struct.unpack_from("<HI", data, p)
        if tag not in SECTION_NAMES:
            raise FormatError("malformed", p, prefix + "part tag %d is not 1 to 5" % tag, tag)
        if tag <= last_tag:
            raise FormatError("malformed", p, prefix + "part tags do not ascend (%d after %d)" % (tag, last_tag), tag)
        last_tag = tag
        if length > end - p - 6:
            raise FormatError("lengthBeyondEnd", p + 2, prefix + "part body of %d bytes, %d left in the frame"
                              % (length, end - p - 6), tag)
        totals.add_decoded(length, p, tag, prefix + "part")
        body_at = p + 6
        b = Payload(data[body_at:body_at + length], body_at, tag, totals, prefix=prefix)
        if tag == 3:
            prefs = rec["preferences"]
            r = b.count(1, "removed key")
            for _ in range(r):
                kstart = b.pos
                k = b.string()
                if k not in prefs:
                    b.fail("malformed", "removed preference %r is not set" % k, kstart)
                del prefs[k]
            prefs.update(read_preferences(b))
        else:
            arr = rec[ARRAYS[tag]]
            sstart = b.pos
            start = b.varint()
            if start > len(arr):
                b.fail("malformed", "splice start %d is out of range (%d rows)" % (start, len(arr)), sstart)
            rstart = b.pos
            remove = b.varint()
            if remove > len(arr) - start:
                b.fail("malformed", "splice removeCount %d is out of range (start %d, %d rows)"
                       % (remove, start, len(arr)), rstart)
            rows = READERS[tag](b)
            arr[start:start + remove] = rows
        b.end()
        p = body_at + length
    rec["revision"], rec["createdAt"], rec["updatedAt"] = revision, created, updated


# ---------------------------------------------------------------------------------------------
# JSON form (section 12)

MIN_ISO_MS = -62135596800000  # 0001-01-01T00:00:00.000Z
END_ISO_MS = 253402300800000  # 10000-01-01T00:00:00.000Z


def days_to_civil(z):
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def time_json(ms):
    if ms < MIN_ISO_MS or ms >= END_ISO_MS:
        return "@%d" % ms
    days, rem = divmod(ms, 86_400_000)
    y, mo, d = days_to_civil(days)
    h, rem = divmod(rem, 3_600_000)
    mi, rem = divmod(rem, 60_000)
    s, milli = divmod(rem, 1000)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (y, mo, d, h, mi, s, milli)


def decimal_string(value, digits):
    sign = "-" if value < 0 else ""
    v = abs(value)
    if digits == 0:
        return sign + str(v)
    whole, frac = divmod(v, 10 ** digits)
    return "%s%d.%0*d" % (sign, whole, digits, frac)


class Number:
    """A JSON number written from its exact text."""

    def __init__(self, text):
        self.text = text


def kg_json(mg):
    """Milligrams as kilograms: the f64 nearest mg, divided by 1e6, as its shortest form."""
    return double_text(struct.unpack("<Q", struct.pack("<d", float(mg) / 1e6))[0])


def double_text(bits):
    v = struct.unpack("<d", struct.pack("<Q", bits))[0]
    if v != v:
        return {"number": "NaN", "bits": "0x%016x" % bits}
    if v == float("inf"):
        return {"number": "Infinity"}
    if v == float("-inf"):
        return {"number": "-Infinity"}
    text = repr(v)
    if text.endswith(".0"):
        text = text[:-2]
    if abs(v) > 2.0 ** 53 and "e" not in text:
        # Python writes integers below 1e16 in full; the engine switches to the exponent form above 2^53.
        digits = text.lstrip("-")
        mant = digits.rstrip("0")
        mant = mant[0] + ("." + mant[1:] if len(mant) > 1 else "")
        text = ("-" if v < 0 else "") + mant + "e+%02d" % (len(digits) - 1)
    if "e" in text:
        mant, exp = text.split("e")
        text = mant + "e" + ("+" if not exp.startswith("-") and not exp.startswith("+") else "") + exp
    return Number(text)


def money_json(amount, currency):
    return {"amount": decimal_string(amount, MINOR_UNITS.get(currency, 2)), "currency": currency}


def record_json(rec):
    txs = []
    for t in rec["transactions"]:
        o = {"id": t["id"], "time": time_json(t["time"]), "amount": money_json(t["amount"], t["currency"])}
        for k in ("merchant", "mcc", "category", "accountId", "description"):
            if t[k] is not None:
                o[k] = t[k]
        if t["metadata"]:
            o["metadata"] = t["metadata"]
        txs.append(o)
    resp = []
    for r in rec["responses"]:
        kind, v = r["answer"]
        a = double_text(v) if kind == "number" else v
        resp.append({"questionId": r["questionId"], "answeredAt": time_json(r["answeredAt"]), "answer": a})
    prefs = {k: {"value": v["value"], "updatedAt": time_json(v["updatedAt"])} for k, v in rec["preferences"].items()}
    fps = []
    for f in rec["footprints"]:
        o = {"id": f["id"], "kgCO2e": kg_json(f["co2e"]), "category": f["category"],
             "methodology": f["methodology"], "calculatedAt": time_json(f["calculatedAt"])}
        if f["transactionId"] is not None:
            o["transactionId"] = f["transactionId"]
        if f["period"] is not None:
            o["period"] = {"start": time_json(f["period"][0]), "end": time_json(f["period"][1])}
        fps.append(o)
    savs = []
    for s in rec["savings"]:
        o = {"id": s["id"], "actionId": s["actionId"], "kgCO2e": kg_json(s["co2e"]),
             "period": {"start": time_json(s["period"][0]), "end": time_json(s["period"][1])},
             "recordedAt": time_json(s["recordedAt"])}
        if s["money"] is not None:
            o["moneySaved"] = money_json(*s["money"])
        savs.append(o)
    return {"userId": rec["userId"], "revision": rec["revision"], "createdAt": time_json(rec["createdAt"]),
            "updatedAt": time_json(rec["updatedAt"]), "transactions": txs, "responses": resp,
            "preferences": prefs, "footprints": fps, "savings": savs}


ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def quote(s):
    out = ['"']
    for ch in s:
        if ch in ESCAPES:
            out.append(ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def dump(v, indent=""):
    """Pretty-printed like the engine's JSON: two-space indent, `" : "`, keys in UTF-8 byte order."""
    inner = indent + "  "
    if isinstance(v, dict):
        if not v:
            return "{\n\n" + indent + "}"
        keys = sorted(v, key=lambda k: k.encode("utf-8"))
        return "{\n" + ",\n".join(inner + quote(k) + " : " + dump(v[k], inner) for k in keys) + "\n" + indent + "}"
    if isinstance(v, list):
        if not v:
            return "[\n\n" + indent + "]"
        return "[\n" + ",\n".join(inner + dump(x, inner) for x in v) + "\n" + indent + "]"
    if isinstance(v, Number):
        return v.text
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return quote(v)
    raise TypeError(type(v))


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: read_cstore.py FILE\n")
        return 64
    try:
        with open(argv[1], "rb") as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        sys.stderr.write("read_cstore: cannot read %s: %s\n" % (argv[1], e.strerror))
        return 1
    try:
        res = read_file(data)
    except FormatError as e:
        sys.stderr.write("read_cstore: %s\n" % e.line())
        return 5
    if res.valid_length < len(data):
        sys.stderr.write("read_cstore: ignored tail of %d bytes at offset %d (%s)\n"
                         % (len(data) - res.valid_length, res.valid_length, res.ignored_reason))
    sys.stdout.write(dump(record_json(res.record)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
