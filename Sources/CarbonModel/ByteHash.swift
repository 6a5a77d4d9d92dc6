/// A 64-bit hash of bytes, for in-memory tables and filters keyed by UTF-8 bytes: the format's
/// section dictionaries (CarbonFormat's `StringTable`, which an encoder fills) and the key filters of
/// `ItemList`. No hash is ever stored: files do not depend on it.
///
/// It is the standard library's `Hasher` (SipHash-1-3) of the bytes alone, under the key that the
/// standard library draws at random for each process, so that strings whose hashes collide can be
/// neither computed offline nor built from differences that cancel whatever the key: API clients
/// choose transaction ids and merchant names, and colliding ones would make every lookup of a
/// user's ids scan all of them and every new snapshot's dictionary probe quadratically (minutes of
/// processor time per request, measured with a fast hash that was seeded in its first state only).
/// Every output bit depends on every input bit: the low and the high 32 bits are two independent
/// hashes (a Bloom filter may take one probe from each), and any run of low bits indexes an
/// open-addressing table. Unlike `String`'s own hashing it does not normalise: canonically
/// equivalent spellings with other bytes hash apart.
public enum ByteHash {
    /// The hash of the bytes in `bytes`: SipHash-1-3 under this process's random key, through the
    /// standard library's `Hasher` (the length is mixed in by the algorithm).
    @inlinable public static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(bytes: bytes)
        return UInt64(bitPattern: Int64(hasher.finalize()))
    }

    /// The hash of the string's UTF-8 bytes: strings with the same bytes hash alike (canonically
    /// equivalent spellings with other bytes, such as NFC and NFD, do not).
    @inlinable public static func hash(_ string: String) -> UInt64 {
        var s = string
        return s.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
    }
}
