import CarbonModel

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

// The payloads of the five known sections. Layouts are specified in docs/FORMAT.md.

/// The per-section dictionary of repeated strings, in order of first use.
///
/// An open-addressing table of indices into `strings`, probed by `ByteHash` of the UTF-8 bytes: the
/// standard `Dictionary` would hash every lookup with a freshly seeded SipHash, which cost a
/// quarter of encoding a snapshot. In front of it, a small cache keyed by a string's
/// representation (its 16 bytes: the storage's address and length, or a small string's bytes)
/// answers most lookups without reading or hashing any byte: the rows of a record share a few
/// storages for their repeated strings (a decoded record shares its dictionary's strings). The
/// cache holds each string it maps, so no storage it names is freed and reused for other bytes
/// while the table lives.
struct StringTable {
    private(set) var strings: [String] = []
    /// Index + 1 into `strings` (0: empty), at the slot of a hash; a power of two long.
    private var slots: [Int32]
    private var hashes: [UInt64] = []
    /// The representation cache, direct-mapped, a power of two long: a string, and its index in
    /// `strings` (-1: empty slot).
    private var recent: [(string: String, id: Int)]

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size *= 2 }
        slots = [Int32](repeating: 0, count: size)
        strings.reserveCapacity(capacity)
        hashes.reserveCapacity(capacity)
        recent = Array(repeating: ("", -1), count: "".representationBits == nil ? 0 : size * 2)
    }

    /// Strings of `LongKeyOrder.longKey` bytes or more, by representation, with their index: two
    /// long strings that share a slot of `recent` (say the two keys that every transaction of a
    /// decoded record names) would otherwise hash their bytes at every use. The strings are held,
    /// so no other string can take their representation while they are here.
    private var long: [LongKeyOrder.Bits: (string: String, id: Int)] = [:]

    mutating func id(_ s: String) -> Int {
        // `String.representationBits`: two live strings with the same bits hold the same bytes.
        guard !recent.isEmpty, let key = s.representationBits else { return lookUp(s) }
        var h = (key.0 ^ (key.1 &* 0x9E37_79B9_7F4A_7C15)) &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 32
        let slot = Int(truncatingIfNeeded: h) & (recent.count - 1)
        let (cached, cachedID) = recent[slot]
        if cachedID >= 0, let bits = cached.representationBits, bits == key { return cachedID }
        let isLong = s.utf8.count >= LongKeyOrder.longKey
        if isLong, let known = long[LongKeyOrder.Bits(key)] {
            recent[slot] = known
            return known.id
        }
        let i = lookUp(s)
        recent[slot] = (s, i)
        if isLong { long[LongKeyOrder.Bits(key)] = (s, i) }
        return i
    }

    /// How many strings were looked up by their bytes (tests).
    private(set) var lookUps = 0

    private mutating func lookUp(_ s: String) -> Int {
        lookUps += 1
        var contiguous = s
        return contiguous.withUTF8 { bytes in lookUp(s, bytes) }
    }

    private mutating func lookUp(_ s: String, _ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        let hash = ByteHash.hash(UnsafeRawBufferPointer(bytes))
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = Int(slots[slot])
            if entry == 0 { break }
            if hashes[entry - 1] == hash, strings[entry - 1].isByteEqual(to: s) { return entry - 1 }
            slot = (slot + 1) & mask
        }
        let i = strings.count
        strings.append(s)
        hashes.append(hash)
        slots[slot] = Int32(i + 1)
        if strings.count * 2 > slots.count { grow() }
        return i
    }

    private mutating func grow() {
        slots = [Int32](repeating: 0, count: slots.count * 2)
        let mask = slots.count - 1
        for (i, hash) in hashes.enumerated() {
            var slot = Int(truncatingIfNeeded: hash) & mask
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(i + 1)
        }
    }

    /// 0 for nil, else index + 1.
    mutating func optionalID(_ s: String?) -> Int {
        guard let s else { return 0 }
        return id(s) + 1
    }

    func write(to w: inout ByteWriter) {
        w.itemCount(strings.count)
        for s in strings { w.string(s) }
    }
}

/// The currency of a decoded transaction's row until its currency column is read.
private let placeholderCurrency = CurrencyCode("XXX")!

/// Orders dictionary keys by their UTF-8 bytes, so the encoding does not depend on hashing or locale.
@inline(__always) func utf8Less(_ a: String, _ b: String) -> Bool {
    a.isBytewiseLess(than: b)
}

/// The order of metadata keys for one section's encoding: `utf8Less`, with the order of two long
/// keys remembered by the strings' representations (`String.representationBits`), so that many
/// transactions naming the same two long keys (a record decoded from a file, whose transactions
/// share the dictionary's strings) compare their bytes once, not once each.
///
/// Long means more than 4 KiB: longer than any key or value the HTTP API accepts, so that records
/// written through it never fill the table. It remembers at most `maxRemembered` pairs (a few
/// megabytes), then compares the rest directly. It does not hold the strings it remembers: every
/// string passed to `less` must outlive it (the keys of the transactions being encoded do), or a
/// string made later at the same address with the same length would be given the order remembered
/// for the one before. Transactions naming many different pairs of long keys still compare each
/// pair once (docs/FORMAT.md §8).
struct LongKeyOrder {
    /// Keys of this many bytes or more are long.
    static let longKey = 4 * 1024 + 1
    static let maxRemembered = 1 << 16

    /// A string's representation (`String.representationBits`), as a dictionary key.
    struct Bits: Hashable, Comparable {
        let b0, b1: UInt64
        init(_ bits: (UInt64, UInt64)) { (b0, b1) = bits }
        static func < (x: Bits, y: Bits) -> Bool { (x.b0, x.b1) < (y.b0, y.b1) }
    }

    /// Two representations, the lesser first.
    struct Pair: Hashable {
        let low, high: Bits
    }
    /// The order of `low`'s bytes against `high`'s: -1, 0 (equal bytes) or 1.
    private var known: [Pair: Int8] = [:]
    /// How many times two long keys' bytes were compared (tests).
    private(set) var comparisons = 0

    mutating func less(_ a: String, _ b: String) -> Bool {
        guard a.utf8.count >= Self.longKey, b.utf8.count >= Self.longKey, let x = a.representationBits,
            let y = b.representationBits
        else { return utf8Less(a, b) }
        let (bx, by) = (Bits(x), Bits(y))
        if bx == by { return false }
        // The pair is kept with the lesser representation first, and the order of its bytes.
        let aIsLow = bx < by
        let pair = aIsLow ? Pair(low: bx, high: by) : Pair(low: by, high: bx)
        let order: Int8
        if let remembered = known[pair] {
            order = remembered
        } else {
            comparisons += 1
            order = Int8((aIsLow ? a.bytewiseOrder(b) : b.bytewiseOrder(a)).signum())
            if known.count < Self.maxRemembered { known[pair] = order }
        }
        return aIsLow ? order < 0 : order > 0
    }
}

/// A decoded section dictionary.
struct DecodedTable {
    let strings: [String]
    private var currencies: [CurrencyCode?]

    init(_ r: inout ByteReader) throws(FormatError) {
        let n = try r.count("dictionary size")
        var strings: [String] = []
        strings.reserveCapacity(n)
        for _ in 0..<n { strings.append(try r.string("dictionary entry")) }
        self.strings = strings
        currencies = []
    }

    @inline(__always) func string(_ r: inout ByteReader, _ what: @autoclosure () -> String)
        throws(FormatError)
        -> String
    {
        try Self.string(strings, &r, what())
    }

    /// `string(_:_:)` of a table's `strings` held in a local (a loop inside a closure that captures
    /// the table retained and released its arrays on every lookup made through it).
    @inline(__always) static func string(
        _ strings: [String], _ r: inout ByteReader, _ what: @autoclosure () -> String
    ) throws(FormatError) -> String {
        strings[try r.int(max: strings.count - 1, "\(what()) index")]
    }

    /// varint 0 for none, else the index of one of `strings` (a table's, held in a local) + 1.
    @inline(__always) static func optionalString(
        _ strings: [String], _ r: inout ByteReader, _ what: @autoclosure () -> String
    ) throws(FormatError) -> String? {
        let i = try r.int(max: strings.count, "\(what()) index")
        return i == 0 ? nil : strings[i - 1]
    }

    /// The currency at dictionary index `i` (already bounds-checked), validated once per entry.
    mutating func currency(at i: Int, _ r: ByteReader, start: Int) throws(FormatError) -> CurrencyCode {
        if currencies.isEmpty { currencies = Array(repeating: nil, count: strings.count) }
        if let c = currencies[i] { return c }
        guard let c = storedCurrency(strings[i]) else {
            throw r.error(
                .invalidValue, "currency code '\(strings[i])' is not three upper-case ASCII letters",
                at: start)
        }
        currencies[i] = c
        return c
    }

    mutating func currency(_ r: inout ByteReader) throws(FormatError) -> CurrencyCode {
        let start = r.pos
        let i = try r.int(max: strings.count - 1, "currency index")
        return try currency(at: i, r, start: start)
    }

    /// varint 0 for nil, else currency index + 1.
    mutating func optionalCurrency(_ r: inout ByteReader) throws(FormatError) -> CurrencyCode? {
        let start = r.pos
        let i = try r.int(max: strings.count, "currency index")
        return i == 0 ? nil : try currency(at: i - 1, r, start: start)
    }
}

// MARK: - Transactions (tag 1), columnar

enum TransactionsSection {
    /// Bytes of the smallest row: one byte in each of the ten columns.
    static let minRowSize = 10

    static func encode(_ ts: [Transaction], into w: inout ByteWriter) {
        // Rows are read in place through a buffer: `for t in ts` would copy each transaction (and
        // retain and release its nine references) once per column.
        ts.withUnsafeBufferPointer { encode($0, into: &w) }
    }

    private static func encode(_ ts: UnsafeBufferPointer<Transaction>, into w: inout ByteWriter) {
        let n = ts.count
        // Sized for a snapshot's rows, or for the few of a change frame (up to four strings a row
        // besides metadata; the table grows past that): making and freeing a table sized for many
        // rows cost a frame of one transaction more than its encoding.
        var table = StringTable(capacity: min(64, 4 * n + 4))
        var ids = [Int](repeating: 0, count: 4 * n)
        var metadata: [[(Int, Int)]] = []
        var anyMetadata = false
        var keyOrder = LongKeyOrder()
        // Dictionary indices of each row's currency, merchant, category and account, in four blocks.
        ids.withUnsafeMutableBufferPointer { ids in
            for i in 0..<n {
                ids[i] = table.id(ts[i].amount.currency.code)
                ids[n + i] = table.optionalID(ts[i].merchant)
                ids[2 * n + i] = table.optionalID(ts[i].category)
                ids[3 * n + i] = table.optionalID(ts[i].accountID)
                if !ts[i].metadata.isEmpty {
                    if !anyMetadata {
                        metadata = Array(repeating: [], count: n)
                        anyMetadata = true
                    }
                    // Through the (inlinable) `sortedByKey`: iterating the dictionary goes through
                    // CarbonModel's unspecialised generic iterator, several times slower, and a
                    // lookup of each value by its key would hash the key's bytes once more.
                    let meta = ts[i].metadata
                    var pairs: [(Int, Int)] = []
                    pairs.reserveCapacity(meta.count)
                    for (k, v) in meta.sortedByKey({ keyOrder.less($0, $1) }) {
                        pairs.append((table.id(k), table.id(v)))
                    }
                    metadata[i] = pairs
                }
            }
        }
        w.itemCount(n)
        table.write(to: &w)
        for i in 0..<n { w.string(ts[i].id) }
        var previous: Int64 = 0
        for i in 0..<n { w.delta(ts[i].time, from: &previous) }
        for i in 0..<n { w.zigzag(ts[i].amount.minorUnits) }
        for i in 0..<(2 * n) { w.varint(ids[i]) }
        for i in 0..<n {
            if let mcc = ts[i].mcc { w.varint(Int(mcc) + 1) } else { w.u8(0) }
        }
        for i in (2 * n)..<(4 * n) { w.varint(ids[i]) }
        for i in 0..<n { w.optionalString(ts[i].description) }
        if anyMetadata {
            for pairs in metadata {
                w.itemCount(pairs.count)
                for (k, v) in pairs {
                    w.varint(k)
                    w.varint(v)
                }
            }
        } else {
            w.zeros(n)
        }
    }

    static func decode(_ r: inout ByteReader) throws(FormatError) -> [Transaction] {
        let n = try r.count("transaction count", minItemSize: TransactionsSection.minRowSize)
        var table = try DecodedTable(&r)
        // Each row starts as a copy of one transaction when its id is read, and each later column
        // sets its field in place: no column is held in an array of its own. (The initializer's
        // default `metadata: [:]` would build an empty dictionary, through an array, for every row;
        // the placeholder currency is replaced by the currency column.)
        var result: [Transaction] = []
        result.reserveCapacity(n)
        var prototype = Transaction(
            id: "", time: Timestamp(millisecondsSince1970: 0),
            amount: Money(minorUnits: 0, currency: placeholderCurrency))
        for _ in 0..<n {
            prototype.id = try r.string("transaction id")
            result.append(prototype)
        }
        try result.withUnsafeMutableBufferPointer { (rows) throws(FormatError) in
            var previous: Int64 = 0
            for i in 0..<n { rows[i].time = try r.delta(from: &previous, "transaction time") }
            for i in 0..<n { rows[i].amount.minorUnits = try r.zigzag("amount") }
            for i in 0..<n { rows[i].amount.currency = try table.currency(&r) }
            // The dictionary's strings held in a local: looked up through `table`, a variable the
            // closure captures, each lookup retained and released its arrays.
            let strings = table.strings
            for i in 0..<n { rows[i].merchant = try DecodedTable.optionalString(strings, &r, "merchant") }
            for i in 0..<n {
                let start = r.pos
                let m = try r.varint("merchant category code")
                guard m <= 10_000 else {
                    throw r.error(.invalidValue, "merchant category code \(m - 1) is above 9999", at: start)
                }
                rows[i].mcc = m == 0 ? nil : UInt16(m - 1)
            }
            for i in 0..<n { rows[i].category = try DecodedTable.optionalString(strings, &r, "category") }
            for i in 0..<n { rows[i].accountID = try DecodedTable.optionalString(strings, &r, "account id") }
            for i in 0..<n { rows[i].description = try r.optionalString("description") }
        }
        // Each dictionary string named as a metadata key is made a key (its bytes hashed) once, at
        // its first use: a file whose many entries name one long key costs that key's bytes once,
        // not once per entry.
        var keys: [HashedKey?] = []
        for i in 0..<n {
            let countStart = r.pos
            let m = try r.count("metadata entry count", minItemSize: 2)
            guard m > 0 else { continue }
            // Keys are distinct dictionary strings, so there cannot be more entries than strings.
            guard m <= table.strings.count else {
                throw r.error(
                    .malformed,
                    "metadata entry count \(m) is more than the \(table.strings.count) strings of the dictionary (keys are distinct)",
                    at: countStart)
            }
            var meta = ExactDictionary<String>()
            meta.reserveCapacity(m)
            if keys.isEmpty { keys = Array(repeating: nil, count: table.strings.count) }
            for _ in 0..<m {
                let start = r.pos
                let index = try r.int(max: table.strings.count - 1, "metadata key index")
                let key = keys[index] ?? HashedKey(table.strings[index])
                keys[index] = key
                let v = try table.string(&r, "metadata value")
                guard meta.updateValue(v, forKey: key) == nil else {
                    throw r.error(.malformed, "duplicate metadata key '\(key.string)'", at: start)
                }
            }
            result[i].metadata = meta
        }
        return result
    }
}

// MARK: - Responses (tag 2), row by row

enum ResponsesSection {
    /// Bytes of the smallest row: question id, time, kind, and a one-byte value.
    static let minRowSize = 4

    enum Kind: UInt8 {
        case text = 0, number = 1, boolean = 2, choices = 3
    }

    static func encode(_ rs: [QuestionResponse], into w: inout ByteWriter) {
        w.itemCount(rs.count)
        var previous: Int64 = 0
        for r in rs {
            w.string(r.questionID)
            w.delta(r.answeredAt, from: &previous)
            switch r.answer {
            case .text(let s):
                w.u8(Kind.text.rawValue)
                w.string(s)
            case .number(let d):
                w.u8(Kind.number.rawValue)
                w.u64(d.bitPattern)
            case .boolean(let b):
                w.u8(Kind.boolean.rawValue)
                w.u8(b ? 1 : 0)
            case .choices(let cs):
                w.u8(Kind.choices.rawValue)
                w.itemCount(cs.count)
                for c in cs { w.string(c) }
            }
        }
    }

    static func decode(_ r: inout ByteReader) throws(FormatError) -> [QuestionResponse] {
        let n = try r.count("response count", minItemSize: ResponsesSection.minRowSize)
        var result: [QuestionResponse] = []
        result.reserveCapacity(n)
        var previous: Int64 = 0
        for _ in 0..<n {
            let q = try r.string("question id")
            let t = try r.delta(from: &previous, "answer time")
            let start = r.pos
            let answer: Answer
            switch Kind(rawValue: try r.u8("answer kind")) {
            case .text: answer = .text(try r.string("answer text"))
            case .number: answer = .number(Double(bitPattern: try r.u64("answer number")))
            case .boolean:
                let b = try r.u8("answer boolean")
                guard b <= 1 else {
                    throw r.error(.malformed, "boolean answer \(b) is not 0 or 1", at: r.pos - 1)
                }
                answer = .boolean(b == 1)
            case .choices:
                let m = try r.count("choice count")
                var cs: [String] = []
                cs.reserveCapacity(m)
                for _ in 0..<m { cs.append(try r.string("choice")) }
                answer = .choices(cs)
            case nil:
                throw r.error(.malformed, "unknown answer kind \(r.buffer[start])", at: start)
            }
            result.append(QuestionResponse(questionID: q, answer: answer, answeredAt: t))
        }
        return result
    }
}

// MARK: - Preferences (tag 3), row by row, keys in UTF-8 byte order

enum PreferencesSection {
    /// Bytes of the smallest row: key, value, time.
    static let minRowSize = 3

    static func encode(_ ps: ExactDictionary<Preference>, into w: inout ByteWriter) {
        w.itemCount(ps.count)
        var previous: Int64 = 0
        for (k, p) in ps.sorted(by: { utf8Less($0.key, $1.key) }) {
            w.string(k)
            w.string(p.value)
            w.delta(p.updatedAt, from: &previous)
        }
    }

    static func decode(_ r: inout ByteReader) throws(FormatError) -> ExactDictionary<Preference> {
        let n = try r.count("preference count", minItemSize: PreferencesSection.minRowSize)
        var result = ExactDictionary<Preference>()
        result.reserveCapacity(n)
        var previous: Int64 = 0
        for _ in 0..<n {
            let start = r.pos
            let k = try r.string("preference key")
            let v = try r.string("preference value")
            let t = try r.delta(from: &previous, "preference time")
            guard result.updateValue(Preference(value: v, updatedAt: t), forKey: k) == nil else {
                throw r.error(.malformed, "duplicate preference key '\(k)'", at: start)
            }
        }
        return result
    }
}

// MARK: - Footprints (tag 4), columnar

enum FootprintsSection {
    /// Bytes of the smallest row: one byte in each of the seven columns.
    static let minRowSize = 7

    static func encode(_ fs: [Footprint], into w: inout ByteWriter) {
        fs.withUnsafeBufferPointer { encode($0, into: &w) }
    }

    private static func encode(_ fs: UnsafeBufferPointer<Footprint>, into w: inout ByteWriter) {
        let n = fs.count
        var table = StringTable(capacity: 16)
        // Dictionary indices of each row's category, then of each row's methodology.
        var ids = [Int](repeating: 0, count: 2 * n)
        ids.withUnsafeMutableBufferPointer { ids in
            for i in 0..<n {
                ids[i] = table.id(fs[i].category)
                ids[n + i] = table.id(fs[i].methodology)
            }
        }
        w.itemCount(n)
        table.write(to: &w)
        for i in 0..<n { w.string(fs[i].id) }
        for i in 0..<n { w.optionalString(fs[i].transactionID) }
        for i in 0..<n { w.zigzag(fs[i].co2e.milligrams) }
        for i in 0..<(2 * n) { w.varint(ids[i]) }
        var previous: Int64 = 0
        for i in 0..<n { w.delta(fs[i].calculatedAt, from: &previous) }
        previous = 0
        for i in 0..<n {
            guard let p = fs[i].period else {
                w.u8(0)
                continue
            }
            w.u8(1)
            w.delta(p.start, from: &previous)
            w.zigzag(p.end.millisecondsSince1970 &- p.start.millisecondsSince1970)
        }
    }

    /// The footprints at `r`. A transaction id that is the same bytes as the id of the transaction
    /// of `transactions` that the previous footprint's id matched, or of the one after it (footprints
    /// usually follow their transactions' order), shares that transaction's string: no copy, no
    /// allocation, and the decoded record holds each such id once.
    static func decode(_ r: inout ByteReader, transactions: [Transaction] = []) throws(FormatError)
        -> [Footprint]
    {
        let n = try r.count("footprint count", minItemSize: FootprintsSection.minRowSize)
        let table = try DecodedTable(&r)
        // As for transactions: rows made when their ids are read, the other columns set in place.
        var result: [Footprint] = []
        result.reserveCapacity(n)
        var prototype = Footprint(
            id: "", transactionID: nil, co2e: CO2e(milligrams: 0), category: "", methodology: "",
            calculatedAt: Timestamp(millisecondsSince1970: 0))
        for _ in 0..<n {
            prototype.id = try r.string("footprint id")
            result.append(prototype)
        }
        try result.withUnsafeMutableBufferPointer { (rows) throws(FormatError) in
            var next = 0
            for i in 0..<n {
                guard let length = try r.optionalStringLength("footprint transaction id") else { continue }
                let bytes = UnsafeRawBufferPointer(rebasing: r.buffer[r.pos..<(r.pos + length)])
                if next < transactions.count, sameBytes(transactions[next].id, bytes) {
                    rows[i].transactionID = transactions[next].id
                    next += 1
                    r.pos += length
                } else if next + 1 < transactions.count, sameBytes(transactions[next + 1].id, bytes) {
                    rows[i].transactionID = transactions[next + 1].id
                    next += 2
                    r.pos += length
                } else {
                    rows[i].transactionID = try r.utf8(length, "footprint transaction id")
                }
            }
            for i in 0..<n { rows[i].co2e = CO2e(milligrams: try r.zigzag("kgCO2e")) }
            let strings = table.strings
            for i in 0..<n { rows[i].category = try DecodedTable.string(strings, &r, "footprint category") }
            for i in 0..<n {
                rows[i].methodology = try DecodedTable.string(strings, &r, "footprint methodology")
            }
            var previous: Int64 = 0
            for i in 0..<n { rows[i].calculatedAt = try r.delta(from: &previous, "calculation time") }
            previous = 0
            for i in 0..<n {
                guard try r.int(max: 1, "period presence") == 1 else { continue }
                let start = try r.delta(from: &previous, "period start")
                let length = try r.zigzag("period length")
                rows[i].period = Period(
                    start: start, end: Timestamp(millisecondsSince1970: start.millisecondsSince1970 &+ length)
                )
            }
        }
        return result
    }
}

// MARK: - Savings (tag 5), columnar

enum SavingsSection {
    /// Bytes of the smallest row: id, action, co2e, no money saved, period start and length, time.
    static let minRowSize = 7

    static func encode(_ ss: [Saving], into w: inout ByteWriter) {
        var table = StringTable(capacity: 16)
        var action = [Int](), currency = [Int]()
        action.reserveCapacity(ss.count)
        currency.reserveCapacity(ss.count)
        for s in ss {
            action.append(table.id(s.actionID))
            currency.append(table.optionalID(s.moneySaved?.currency.code))
        }
        w.itemCount(ss.count)
        table.write(to: &w)
        for s in ss { w.string(s.id) }
        for i in action { w.varint(i) }
        for s in ss { w.zigzag(s.co2e.milligrams) }
        for (s, c) in zip(ss, currency) {
            w.varint(c)
            if let m = s.moneySaved { w.zigzag(m.minorUnits) }
        }
        var previous: Int64 = 0
        for s in ss {
            w.delta(s.period.start, from: &previous)
            w.zigzag(s.period.end.millisecondsSince1970 &- s.period.start.millisecondsSince1970)
        }
        previous = 0
        for s in ss { w.delta(s.recordedAt, from: &previous) }
    }

    static func decode(_ r: inout ByteReader) throws(FormatError) -> [Saving] {
        let n = try r.count("saving count", minItemSize: SavingsSection.minRowSize)
        var table = try DecodedTable(&r)
        var ids: [String] = []
        ids.reserveCapacity(n)
        for _ in 0..<n { ids.append(try r.string("saving id")) }
        let zero = Timestamp(millisecondsSince1970: 0)
        var result: [Saving] = []
        result.reserveCapacity(n)
        for i in 0..<n {
            let a = try table.string(&r, "action id")
            result.append(
                Saving(
                    id: ids[i], actionID: a, co2e: CO2e(milligrams: 0),
                    period: Period(start: zero, end: zero),
                    recordedAt: zero))
        }
        for i in 0..<n { result[i].co2e = CO2e(milligrams: try r.zigzag("kgCO2e")) }
        for i in 0..<n {
            if let c = try table.optionalCurrency(&r) {
                result[i].moneySaved = Money(minorUnits: try r.zigzag("money saved"), currency: c)
            }
        }
        var previous: Int64 = 0
        for i in 0..<n {
            let start = try r.delta(from: &previous, "period start")
            let length = try r.zigzag("period length")
            result[i].period = Period(
                start: start, end: Timestamp(millisecondsSince1970: start.millisecondsSince1970 &+ length))
        }
        previous = 0
        for i in 0..<n { result[i].recordedAt = try r.delta(from: &previous, "record time") }
        return result
    }
}
