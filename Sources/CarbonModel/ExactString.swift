import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A string that is equal to another only when their UTF-8 bytes are equal, and that hashes and
/// orders by those bytes.
///
/// Swift's `String` compares by canonical equivalence: `"\u{E9}"` (é) and `"e\u{301}"` (e and a
/// combining accent) are `==`, hash alike and collapse into one `Dictionary` key. The file format
/// keeps every string byte for byte, so the model does too: ids, keys and record equality use
/// `ExactString` (or the `String` helpers below), never plain `String ==`.
public struct ExactString: Sendable, Hashable, Comparable, CustomStringConvertible,
    ExpressibleByStringLiteral, Codable
{
    public var string: String

    @inlinable public init(_ string: String) { self.string = string }
    public init(stringLiteral value: String) { string = value }

    public var description: String { string }

    public static func == (a: ExactString, b: ExactString) -> Bool { a.string.isByteEqual(to: b.string) }

    public func hash(into hasher: inout Hasher) { string.hashBytes(into: &hasher) }

    /// Order of the UTF-8 bytes (for strings in NFC the same as Unicode scalar order).
    public static func < (a: ExactString, b: ExactString) -> Bool { a.string.isBytewiseLess(than: b.string) }

    public init(from decoder: any Decoder) throws {
        string = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(string)
    }
}

extension String {
    /// Whether both strings have the same UTF-8 bytes (unlike `==`, which treats canonically
    /// equivalent spellings as equal).
    @inlinable public func isByteEqual(to other: String) -> Bool {
        // The same representation (one storage, or the same small string) holds the same bytes.
        if let a = representationBits, let b = other.representationBits, a == b { return true }
        guard utf8.count == other.utf8.count else { return false }
        var a = self
        var b = other
        // `memcmp`, not `elementsEqual`: a byte-by-byte loop made comparing two long keys (a
        // metadata key of megabytes) many times slower than the memory allows.
        return a.withUTF8 { x in
            b.withUTF8 { y in x.isEmpty || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 }
        }
    }

    /// The 16 bytes of the string's representation: its storage's address and length, or a small
    /// string's own bytes. Two live strings with the same bits hold the same UTF-8 bytes (the
    /// converse does not hold: equal bytes may sit in two storages). Nil where a `String` is not
    /// 16 bytes.
    @inlinable public var representationBits: (UInt64, UInt64)? {
        guard MemoryLayout<String>.size == 16 else { return nil }
        return withUnsafeBytes(of: self) { $0.loadUnaligned(as: (UInt64, UInt64).self) }
    }

    /// Whether this string's UTF-8 bytes come before the other's in lexicographic order (a proper
    /// prefix comes first).
    @inlinable public func isBytewiseLess(than other: String) -> Bool { bytewiseOrder(other) < 0 }

    /// The order of this string's UTF-8 bytes against the other's: negative when they come first,
    /// zero when they are equal, positive when they come after (a proper prefix comes first).
    @inlinable package func bytewiseOrder(_ other: String) -> Int {
        var a = self
        var b = other
        // `memcmp` compares bytes as unsigned, which is UTF-8's order; `utf8.lexicographicallyPrecedes`
        // walked the views a byte at a time.
        return a.withUTF8 { x in
            b.withUTF8 { y in
                let common = Swift.min(x.count, y.count)
                if common > 0 {
                    let order = memcmp(x.baseAddress!, y.baseAddress!, common)
                    if order != 0 { return Int(order) }
                }
                return x.count < y.count ? -1 : (x.count > y.count ? 1 : 0)
            }
        }
    }

    /// Feeds the UTF-8 bytes and their count to a hasher, consistently with `isByteEqual(to:)`.
    @inlinable public func hashBytes(into hasher: inout Hasher) {
        var s = self
        s.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        hasher.combine(s.utf8.count)
    }
}

extension Optional where Wrapped == String {
    /// Both nil, or both set with the same UTF-8 bytes.
    @inlinable public func isByteEqual(to other: String?) -> Bool {
        switch (self, other) {
        case (nil, nil): return true
        case (let a?, let b?): return a.isByteEqual(to: b)
        default: return false
        }
    }

    @inlinable public func hashBytes(into hasher: inout Hasher) {
        switch self {
        case nil: hasher.combine(false)
        case let s?:
            hasher.combine(true)
            s.hashBytes(into: &hasher)
        }
    }
}

extension Array where Element == String {
    /// The same count, and each pair of strings with the same UTF-8 bytes.
    @inlinable public func isByteEqual(to other: [String]) -> Bool {
        count == other.count && zip(self, other).allSatisfy { $0.isByteEqual(to: $1) }
    }

    @inlinable public func hashBytes(into hasher: inout Hasher) {
        hasher.combine(count)
        for s in self { s.hashBytes(into: &hasher) }
    }
}

/// Values whose equality can be decided byte for byte: strings by their UTF-8 bytes, records by
/// their fields compared that way. `ExactDictionary` compares its values with it.
public protocol ExactlyEquatable {
    /// Whether the two hold the same bytes.
    func isExactlyEqual(to other: Self) -> Bool
    /// Hashes consistently with `isExactlyEqual(to:)`.
    func hashExactly(into hasher: inout Hasher)
}

extension String: ExactlyEquatable {
    public func isExactlyEqual(to other: String) -> Bool { isByteEqual(to: other) }
    public func hashExactly(into hasher: inout Hasher) { hashBytes(into: &hasher) }
}

/// A key of `ExactDictionary`: a string, and the hash of its UTF-8 bytes computed when the key is
/// made (with the process's seeded `Hasher`, as `ExactString` hashes). Dictionaries hash the stored
/// number, so a key of any length costs one hash of its bytes however many dictionaries it is put
/// in; two keys are equal when their hashes and their bytes are.
@usableFromInline package struct HashedKey: Hashable, Sendable {
    @usableFromInline package let string: String
    @usableFromInline let hash: Int

    @inlinable package init(_ string: String) {
        self.string = string
        var hasher = Hasher()
        string.hashBytes(into: &hasher)
        hash = hasher.finalize()
    }

    @inlinable package static func == (a: HashedKey, b: HashedKey) -> Bool {
        a.hash == b.hash && a.string.isByteEqual(to: b.string)
    }

    @inlinable package func hash(into hasher: inout Hasher) { hasher.combine(hash) }
}

/// A dictionary keyed by strings compared byte for byte: `"\u{E9}"` and `"e\u{301}"` are two keys.
///
/// It reads like `[String: Value]`: subscript by `String`, dictionary literals, iteration over
/// `(key, value)` pairs in no particular order (`sortedByKey` gives UTF-8 byte order). Two
/// dictionaries are equal when they hold the same keys (bytes) with exactly equal values.
public struct ExactDictionary<Value: Sendable>: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    /// Keyed by `HashedKey`: each key's bytes are hashed once, when the key is made, and a key made
    /// once can be put in many dictionaries (`updateValue(_:forKey:)` with a `HashedKey`): a
    /// decoder that builds the metadata of many transactions from one dictionary string hashes it
    /// once, however long it is.
    @usableFromInline var storage: [HashedKey: Value]

    @inlinable public init() { storage = [:] }

    /// The entries of a `[String: Value]` (whose keys are already distinct).
    public init(_ dictionary: [String: Value]) {
        storage = Dictionary(uniqueKeysWithValues: dictionary.map { (HashedKey($0.key), $0.value) })
    }

    /// Keys must be distinct byte strings, as in a dictionary literal.
    public init(dictionaryLiteral elements: (String, Value)...) {
        storage = Dictionary(uniqueKeysWithValues: elements.map { (HashedKey($0.0), $0.1) })
    }

    @inlinable public subscript(key: String) -> Value? {
        get { storage[HashedKey(key)] }
        set { storage[HashedKey(key)] = newValue }
    }

    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.isEmpty }
    public var keys: [String] { storage.keys.map(\.string) }

    /// Sets the value for the key; returns the value it replaced, if any.
    @discardableResult
    @inlinable public mutating func updateValue(_ value: Value, forKey key: String) -> Value? {
        storage.updateValue(value, forKey: HashedKey(key))
    }

    /// Sets the value for a key made before (and perhaps used in other dictionaries); returns the
    /// value it replaced, if any.
    @discardableResult
    @inlinable package mutating func updateValue(_ value: Value, forKey key: HashedKey) -> Value? {
        storage.updateValue(value, forKey: key)
    }

    /// Removes the key; returns its value, if it was there.
    @discardableResult
    public mutating func removeValue(forKey key: String) -> Value? {
        storage.removeValue(forKey: HashedKey(key))
    }

    @inlinable public mutating func reserveCapacity(_ n: Int) { storage.reserveCapacity(n) }

    /// The entries in ascending order of their keys' UTF-8 bytes.
    @inlinable public var sortedByKey: [(key: String, value: Value)] {
        sortedByKey { $0.isBytewiseLess(than: $1) }
    }

    /// The entries in the order of `less` on their keys (which must order them as their UTF-8 bytes
    /// do, faster: an encoder remembers the order of long keys it has compared).
    @inlinable package func sortedByKey(
        _ less: (String, String) -> Bool
    ) -> [(key: String, value: Value)] {
        storage.sorted { less($0.key.string, $1.key.string) }.map { (key: $0.key.string, value: $0.value) }
    }

    public struct Iterator: IteratorProtocol {
        var base: Dictionary<HashedKey, Value>.Iterator
        public mutating func next() -> (key: String, value: Value)? {
            base.next().map { (key: $0.key.string, value: $0.value) }
        }
    }

    public func makeIterator() -> Iterator { Iterator(base: storage.makeIterator()) }
    public var underestimatedCount: Int { storage.count }
}

extension ExactDictionary: Equatable, Hashable, ExactlyEquatable where Value: ExactlyEquatable {
    public static func == (a: ExactDictionary, b: ExactDictionary) -> Bool { a.isExactlyEqual(to: b) }

    public func isExactlyEqual(to other: ExactDictionary) -> Bool {
        guard storage.count == other.storage.count else { return false }
        for (k, v) in storage {
            guard let w = other.storage[k], v.isExactlyEqual(to: w) else { return false }
        }
        return true
    }

    /// Independent of iteration order: the per-entry hashes are combined commutatively.
    public func hash(into hasher: inout Hasher) { hashExactly(into: &hasher) }

    public func hashExactly(into hasher: inout Hasher) {
        var combined = 0
        for (k, v) in storage {
            var h = Hasher()
            k.hash(into: &h)
            v.hashExactly(into: &h)
            combined ^= h.finalize()
        }
        hasher.combine(storage.count)
        hasher.combine(combined)
    }
}

/// The JSON form is an object with one member per entry, keys byte for byte. Foundation's JSON
/// coders key objects by `String`, which merges canonically equivalent keys, so a dictionary holding
/// two such keys is coded through an `ExactJSONKeys` table put in the coder's `userInfo` under
/// `ExactJSONKeys.userInfoKey` (`RecordJSON` in CarbonStore does this): the entries are written
/// under placeholder names that the table maps back to the real keys. Without such a table,
/// encoding two such keys throws rather than drops one of them.
extension ExactDictionary: Codable where Value: Codable {
    struct CodingName: CodingKey {
        var stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingName.self)
        let table = decoder.userInfo[ExactJSONKeys.userInfoKey] as? ExactJSONKeys
        storage = [:]
        for key in c.allKeys {
            let name = table?.key(forPlaceholder: key.stringValue) ?? key.stringValue
            storage[HashedKey(name)] = try c.decode(Value.self, forKey: key)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var seen = Set<String>()
        var clash: (String, String)?
        for k in storage.keys where !seen.insert(k.string).inserted {
            clash = (seen.first { $0 == k.string } ?? "", k.string)
            break
        }
        var c = encoder.container(keyedBy: CodingName.self)
        guard let clash else {
            for (k, v) in sortedByKey { try c.encode(v, forKey: CodingName(stringValue: k)) }
            return
        }
        let (other, key) = clash
        guard let table = encoder.userInfo[ExactJSONKeys.userInfoKey] as? ExactJSONKeys else {
            throw EncodingError.invalidValue(
                key,
                EncodingError.Context(
                    codingPath: encoder.codingPath,
                    debugDescription:
                        "keys '\(DisplayText.escaped(key))' (\(DisplayText.scalarCodes(other))) and (\(DisplayText.scalarCodes(key))) are canonically equivalent but distinct, and this JSON encoder cannot keep both keys of one object; encode with RecordJSON, which keeps every key byte for byte"
                ))
        }
        // Placeholders numbered in the keys' byte order, so that an encoder sorting keys keeps it.
        for (k, v) in sortedByKey {
            try c.encode(v, forKey: CodingName(stringValue: table.placeholder(for: k)))
        }
    }
}

/// The keys of `ExactDictionary` objects that a JSON coder keyed by `String` would merge (keys that
/// are canonically equivalent but byte-distinct), each standing in the JSON under a placeholder name:
/// `marker` followed by the key's number in `keys` as `placeholderDigits` decimal digits.
///
/// Encoding: put an empty table in the encoder's `userInfo` under `userInfoKey`; a dictionary
/// holding such keys writes its entries under placeholders (`placeholder(for:)`), and the caller
/// replaces each placeholder in the output by its key. Decoding: the caller writes such keys as
/// placeholders in the input, fills the table with them, and puts it in the decoder's `userInfo`;
/// the dictionary reads each placeholder back as its key (`key(forPlaceholder:)`) and marks it used.
/// The marker must not occur in any key or value of the data.
public final class ExactJSONKeys: Sendable {
    public static let userInfoKey = CodingUserInfoKey(rawValue: "CarbonModel.ExactJSONKeys")!
    public static let placeholderDigits = 10

    /// ASCII letters and digits only, so that JSON writes it as is.
    public let marker: String
    let state: Mutex<(keys: [String], used: Set<Int>)>

    public init(marker: String, keys: [String] = []) {
        self.marker = marker
        state = Mutex((keys: keys, used: []))
    }

    /// The keys, by number.
    public var keys: [String] { state.withLock { $0.keys } }

    /// The numbers of the keys that `key(forPlaceholder:)` has given out.
    public var used: Set<Int> { state.withLock { $0.used } }

    /// The placeholder of key number `index`.
    public func placeholder(number index: Int) -> String {
        let digits = String(index)
        return marker + String(repeating: "0", count: max(0, Self.placeholderDigits - digits.count)) + digits
    }

    /// Adds a key; returns its placeholder.
    public func placeholder(for key: String) -> String {
        placeholder(
            number: state.withLock { table in
                table.keys.append(key)
                return table.keys.count - 1
            })
    }

    /// The key a placeholder stands for, or nil if `name` is no placeholder of this table.
    public func key(forPlaceholder name: String) -> String? {
        guard name.utf8.count == marker.utf8.count + Self.placeholderDigits,
            name.utf8.starts(with: marker.utf8)
        else { return nil }
        let digits = name.utf8.dropFirst(marker.utf8.count)
        guard digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let index = Int(String(decoding: digits, as: UTF8.self))
        else { return nil }
        return state.withLock { table in
            guard index < table.keys.count else { return nil }
            table.used.insert(index)
            return table.keys[index]
        }
    }
}
