/// A fast 64-bit hash of bytes, for in-memory tables and filters keyed by UTF-8 bytes: the format's
/// section dictionaries (CarbonFormat's `StringTable`, which an encoder fills) and the key filters of
/// `ItemList`. No hash is ever stored: files do not depend on it.
///
/// It starts from a seed drawn at random once per process (`seed`), so that strings that collide
/// cannot be computed offline and sent: without it, an API client could choose transaction ids and
/// merchant names whose hashes share their low bits (found by trying strings against this
/// function), and make every lookup of a user's ids scan all of them and every new snapshot's
/// dictionary probe quadratically (minutes of processor time per request). The seed is no
/// cryptographic key: it defeats collisions searched for offline, not an attacker who can time
/// many lookups.
///
/// It reads eight bytes at a step and ends with a full 64-bit mix, so that every output bit depends
/// on every input bit: the low and the high 32 bits are two independent hashes (a Bloom filter may
/// take one probe from each), and any run of low bits indexes an open-addressing table. The length
/// is mixed in, so inputs of different lengths differ even where their bytes are zero.
public enum ByteHash {
    /// This process's seed, drawn from the system's random source at the first hash.
    public static let seed = UInt64.random(in: .min ... .max)

    /// The hash of the bytes in `bytes`.
    @inlinable public static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        hash(bytes, seed: seed)
    }

    /// The hash of the bytes in `bytes` from `seed` (`hash(_:)` uses this process's).
    @inlinable public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        let n = bytes.count
        var h: UInt64 = (0x9E37_79B9_7F4A_7C15 &* UInt64(truncatingIfNeeded: n &+ 1)) ^ seed
        guard n > 0, let base = bytes.baseAddress else { return finish(h) }
        var i = 0
        while i &+ 8 <= n {
            h = step(h, base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i &+= 8
        }
        if i < n {
            // The last, partial word. With eight or more bytes, the last eight (overlapping bytes
            // already read); else two overlapping loads that together cover every byte. For a given
            // length (mixed in above) each is a one-to-one function of the bytes not yet read.
            let tail: UInt64
            if n >= 8 {
                tail = base.loadUnaligned(fromByteOffset: n &- 8, as: UInt64.self)
            } else if n >= 4 {
                tail =
                    UInt64(base.loadUnaligned(as: UInt32.self))
                    | UInt64(base.loadUnaligned(fromByteOffset: n &- 4, as: UInt32.self)) << 32
            } else {
                tail =
                    UInt64(base.load(as: UInt8.self))
                    | UInt64(base.load(fromByteOffset: n >> 1, as: UInt8.self)) << 8
                    | UInt64(base.load(fromByteOffset: n &- 1, as: UInt8.self)) << 16
            }
            h = step(h, tail)
        }
        return finish(h)
    }

    /// The hash of the string's UTF-8 bytes: strings with the same bytes hash alike (canonically
    /// equivalent spellings with other bytes, such as NFC and NFD, do not).
    @inlinable public static func hash(_ string: String) -> UInt64 {
        var s = string
        return s.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
    }

    @inlinable @inline(__always) static func step(_ h: UInt64, _ word: UInt64) -> UInt64 {
        let m = (h ^ UInt64(littleEndian: word)) &* 0xff51_afd7_ed55_8ccd
        return m ^ (m >> 29)
    }

    /// A 64-bit finaliser: each input bit flips each output bit with probability about one half.
    @inlinable @inline(__always) static func finish(_ h: UInt64) -> UInt64 {
        var h = h
        h ^= h >> 33
        h &*= 0xc4ce_b9fe_1a85_ec53
        h ^= h >> 33
        h &*= 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }
}
