/// An item of a user's list that has a key identifying it in the list, compared byte for byte:
/// a transaction's id, a response's question id, a footprint's or a saving's id.
public protocol KeyedItem: Sendable, Hashable {
    /// The key of the item in its list.
    var itemKey: String { get }
}

extension Transaction: KeyedItem {
    @inlinable public var itemKey: String { id }
}

extension QuestionResponse: KeyedItem {
    @inlinable public var itemKey: String { questionID }
}

extension Footprint: KeyedItem {
    @inlinable public var itemKey: String { id }
}

extension Saving: KeyedItem {
    @inlinable public var itemKey: String { id }
}

/// An ordered list of a user's items (transactions, responses, footprints, savings) whose copies
/// share their elements, so that changing a copy costs what the change touches, not what the list
/// holds.
///
/// It is a random-access, mutable, range-replaceable collection with `Int` indices, used like an
/// array (`append`, `insert`, subscripts, `removeAll(where:)`, array literals), and equal to
/// another list when their elements are equal in order. Underneath, the elements sit in chunks
/// that copies of the list share: a change to a copy copies only the chunks it touches. A list
/// made from one array starts as that one array; the first change inside it cuts it into chunks
/// of 64 that are parts of the same storage (`ArraySlice`, nothing copied), so that no change
/// copies more than a few chunks of elements. Appending to a copy costs the copy of at most one
/// chunk. (The parts keep the whole array's storage alive until each is changed or dropped.)
///
/// `firstIndex(ofKey:)` finds an item by its key without comparing every key: each chunk keeps a
/// filter of its keys' hashes.
public struct ItemList<Element: KeyedItem>: Sendable {
    /// The chunks in order; none is empty.
    @usableFromInline var chunks: [ItemChunk<Element>]
    /// `ends[i]`: the number of elements in chunks 0 through i.
    @usableFromInline var ends: [Int]

    /// The size of the chunks a list is cut into when an element in it changes.
    @usableFromInline static var chunkSize: Int { 64 }

    /// An empty list.
    public init() {
        chunks = []
        ends = []
    }

    /// A list of the elements of `elements`, in order. From an array, this takes the array's
    /// storage as it is.
    @inlinable public init<S: Sequence>(_ elements: S) where S.Element == Element {
        let array = Array(elements)
        // The keys' filter of a list made whole is built by the first change that looks a key up
        // (`buildKeyFilters`), so that decoding a record costs no hashing.
        chunks = array.isEmpty ? [] : [ItemChunk(array[...], filter: nil)]
        ends = array.isEmpty ? [] : [array.count]
    }

    /// The elements as one array: the list's own storage when it is in one chunk, a copy
    /// otherwise.
    @inlinable public var array: [Element] {
        // One chunk over a whole array's storage (a list made from one array) converts without
        // copying.
        if chunks.count == 1 { return Array(chunks[0].items) }
        var result: [Element] = []
        result.reserveCapacity(count)
        for chunk in chunks { result.append(contentsOf: chunk.items) }
        return result
    }

    /// The elements at `range`, as an array.
    @inlinable public func elements(in range: Range<Int>) -> [Element] {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "range out of bounds")
        guard !range.isEmpty else { return [] }
        var result: [Element] = []
        result.reserveCapacity(range.count)
        var (c, o) = locate(range.lowerBound)
        var left = range.count
        while left > 0 {
            let items = chunks[c].items
            let take = Swift.min(left, items.count - o)
            let from = items.startIndex + o
            result.append(contentsOf: items[from..<(from + take)])
            left -= take
            c += 1
            o = 0
        }
        return result
    }

    /// Calls `body` with the elements at `range`: in place when they lie in one chunk (as the
    /// elements a change touched mostly do), else copied into one array first.
    @inlinable public func withElements<R>(
        in range: Range<Int>, _ body: (UnsafeBufferPointer<Element>) throws -> R
    ) rethrows -> R {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "range out of bounds")
        if !range.isEmpty {
            let (c, o) = locate(range.lowerBound)
            let items = chunks[c].items
            if o + range.count <= items.count {
                let from = items.startIndex + o
                return try items[from..<(from + range.count)].withUnsafeBufferPointer(body)
            }
        }
        return try elements(in: range).withUnsafeBufferPointer(body)
    }

    /// How many leading and trailing elements this list and `other` hold in the same storage: a
    /// lower bound of their common prefix and suffix, found without comparing elements (the two
    /// never overlap). A list and a changed copy of it share every element the change did not
    /// touch, in whole chunks or in the parts of a chunk that the change split.
    @inlinable public func sharedEnds(with other: ItemList) -> (prefix: Int, suffix: Int) {
        let limit = Swift.min(count, other.count)
        var prefix = 0
        var (ca, oa, cb, ob) = (0, 0, 0, 0)
        while prefix < limit {
            // The same chunk at the same offset holds the same elements: no address to look up
            // (most chunks of a list and its changed copy are shared whole).
            if chunks[ca] !== other.chunks[cb] || oa != ob {
                guard Self.address(chunks[ca].items, oa) == Self.address(other.chunks[cb].items, ob)
                else { break }
            }
            let x = chunks[ca].items
            let y = other.chunks[cb].items
            let n = Swift.min(x.count - oa, y.count - ob, limit - prefix)
            prefix += n
            oa += n
            ob += n
            if oa == x.count { (ca, oa) = (ca + 1, 0) }
            if ob == y.count { (cb, ob) = (cb + 1, 0) }
        }
        // From the ends: `ra` and `rb` elements of chunks `ea` and `eb` already counted.
        var suffix = 0
        var (ea, ra, eb, rb) = (chunks.count - 1, 0, other.chunks.count - 1, 0)
        while suffix < limit - prefix {
            let x = chunks[ea].items
            let y = other.chunks[eb].items
            if chunks[ea] !== other.chunks[eb] || ra != rb {
                guard Self.address(x, x.count - 1 - ra) == Self.address(y, y.count - 1 - rb) else { break }
            }
            let n = Swift.min(x.count - ra, y.count - rb, limit - prefix - suffix)
            suffix += n
            ra += n
            rb += n
            if ra == x.count { (ea, ra) = (ea - 1, 0) }
            if rb == y.count { (eb, rb) = (eb - 1, 0) }
        }
        return (prefix, suffix)
    }

    /// Where element `offset` of a chunk's elements is stored. Two live chunks' elements at one
    /// address are the same element of the same storage, which cannot change in place while both
    /// hold it.
    @inlinable @inline(__always) static func address(_ items: ArraySlice<Element>, _ offset: Int)
        -> UnsafePointer<Element>?
    {
        items.withUnsafeBufferPointer { $0.baseAddress.map { $0 + offset } }
    }

    /// The index of the first element whose key has exactly these UTF-8 bytes, or nil.
    @inlinable public func firstIndex(ofKey key: String) -> Int? {
        let hash = KeyFilter.hash(key)
        for (c, chunk) in chunks.enumerated() where chunk.filter?.mayContain(hash) ?? true {
            if let i = chunk.items.firstIndex(where: { $0.itemKey.isByteEqual(to: key) }) {
                return (c == 0 ? 0 : ends[c - 1]) + (i - chunk.items.startIndex)
            }
        }
        return nil
    }

    /// Gives every chunk its keys' filter, so that `firstIndex(ofKey:)` compares few keys. A
    /// chunk that another list shares is replaced by one holding the same elements (not copied).
    mutating func buildKeyFilters() {
        for c in chunks.indices where chunks[c].filter == nil {
            if isKnownUniquelyReferenced(&chunks[c]) {
                chunks[c].filter = KeyFilter(chunks[c].items)
            } else {
                chunks[c] = ItemChunk(chunks[c].items, filter: KeyFilter(chunks[c].items))
            }
        }
    }

    /// The chunk holding position `i` (`0 <= i < count`) and the offset in it.
    @inlinable func locate(_ i: Int) -> (chunk: Int, offset: Int) {
        if chunks.count == 1 { return (0, i) }
        var lo = 0
        var hi = ends.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if ends[mid] > i { hi = mid } else { lo = mid + 1 }
        }
        return (lo, i - (lo == 0 ? 0 : ends[lo - 1]))
    }

    /// Changes the elements of chunk `c` in place when no other list shares it, on a copy
    /// otherwise, and keeps `ends` right.
    @inlinable mutating func modifyChunk(_ c: Int, _ body: (inout ArraySlice<Element>) -> Void) {
        let before = chunks[c].items.count
        if isKnownUniquelyReferenced(&chunks[c]) {
            body(&chunks[c].items)
            chunks[c].filter = chunks[c].filter == nil ? nil : KeyFilter(chunks[c].items)
        } else {
            var items = chunks[c].items
            body(&items)
            chunks[c] = ItemChunk(items, filter: chunks[c].filter == nil ? nil : KeyFilter(items))
        }
        let delta = chunks[c].items.count - before
        if delta != 0 {
            for k in c..<ends.count { ends[k] += delta }
        }
    }

    /// Cuts chunk `c` into chunks of `chunkSize` if it is longer than twice that (a list made from
    /// one long array): the new chunks are parts of the same storage (`ArraySlice`), so nothing is
    /// copied, and a change inside one of them copies that one alone. Their keys' filters are
    /// built by the next keyed change (`buildKeyFilters`): a filter of the long chunk would answer
    /// "maybe" in every part for every key it held. Returns the chunk that now holds `offset` and
    /// the offset in it.
    @inlinable mutating func splitIfLong(_ c: Int, offset: Int) -> (chunk: Int, offset: Int) {
        let items = chunks[c].items
        let size = Self.chunkSize
        guard items.count > 2 * size else { return (c, offset) }
        var pieces: [ItemChunk<Element>] = []
        pieces.reserveCapacity((items.count + size - 1) / size)
        var i = items.startIndex
        while i < items.endIndex {
            let j = Swift.min(i + size, items.endIndex)
            pieces.append(ItemChunk(items[i..<j], filter: nil))
            i = j
        }
        chunks.replaceSubrange(c...c, with: pieces)
        rebuildEnds(from: c)
        return (c + offset / size, offset % size)
    }

    /// `items` in the fewest chunks of at most `chunkSize`, of sizes that differ by one at most
    /// (65 elements make chunks of 32 and 33, not 64 and 1), none empty, each with its keys' filter.
    /// Inserting one element in a full chunk thus leaves two half-full ones: inserts in the middle
    /// of a list (transactions that arrive out of time order) do not leave a trail of one-element
    /// chunks that every later change would walk past.
    @inlinable static func cut(_ items: [Element]) -> [ItemChunk<Element>] {
        let count = (items.count + chunkSize - 1) / chunkSize
        var pieces: [ItemChunk<Element>] = []
        pieces.reserveCapacity(count)
        for p in 0..<count {
            let i = items.count * p / count
            let j = items.count * (p + 1) / count
            pieces.append(ItemChunk(items[i..<j]))
        }
        return pieces
    }

    @inlinable mutating func rebuildEnds(from c: Int) {
        ends.removeSubrange(c...)
        var end = c == 0 ? 0 : ends[c - 1]
        for k in c..<chunks.count {
            end += chunks[k].items.count
            ends.append(end)
        }
    }
}

/// A run of a list's elements, shared by the copies of the list. Its elements change in place only
/// while one list alone holds it (`isKnownUniquelyReferenced`), so a chunk that two lists share
/// holds the same elements for both.
@usableFromInline final class ItemChunk<Element: KeyedItem>: @unchecked Sendable {
    /// A run of an array's storage (all of it, or the part of it that a split left here).
    @usableFromInline var items: ArraySlice<Element>
    /// The hashes of the keys of `items` (and perhaps of keys they no longer hold); nil until
    /// built.
    @usableFromInline var filter: KeyFilter?

    @inlinable init(_ items: ArraySlice<Element>, filter: KeyFilter?) {
        self.items = items
        self.filter = filter
    }

    /// A chunk of `items` with their keys' filter.
    @inlinable convenience init(_ items: ArraySlice<Element>) {
        self.init(items, filter: KeyFilter(items))
    }
}

/// A Bloom filter of keys: `mayContain` is true for every key added, and for few others (about 5%
/// at 16 bits a key).
@usableFromInline struct KeyFilter: Sendable {
    @usableFromInline var words: [UInt64]
    /// How many keys were added (with repeats): past `capacity`, the filter is built again.
    @usableFromInline var added = 0

    @inlinable init<C: Collection>(_ items: C) where C.Element: KeyedItem {
        var size = 16
        while size * 4 < items.count { size *= 2 }
        words = [UInt64](repeating: 0, count: size)
        for item in items { add(Self.hash(item.itemKey)) }
    }

    /// How many keys the filter is sized for: 16 bits a key.
    @inlinable var capacity: Int { words.count * 4 }

    @inlinable mutating func add(_ hash: UInt64) {
        added += 1
        let mask = UInt64(words.count * 64 - 1)
        let a = Int(truncatingIfNeeded: hash & mask)
        let b = Int(truncatingIfNeeded: (hash >> 32) & mask)
        words[a >> 6] |= 1 << UInt64(a & 63)
        words[b >> 6] |= 1 << UInt64(b & 63)
    }

    @inlinable func mayContain(_ hash: UInt64) -> Bool {
        let mask = UInt64(words.count * 64 - 1)
        let a = Int(truncatingIfNeeded: hash & mask)
        let b = Int(truncatingIfNeeded: (hash >> 32) & mask)
        return words[a >> 6] & (1 << UInt64(a & 63)) != 0 && words[b >> 6] & (1 << UInt64(b & 63)) != 0
    }

    /// The hash of a key: `ByteHash.hash` of its UTF-8 bytes, so byte-equal keys hash alike. Its
    /// low and high 32 bits are independent, one for each of the filter's two probes.
    @inlinable @inline(__always) static func hash(_ key: String) -> UInt64 { ByteHash.hash(key) }
}

extension ItemList: RandomAccessCollection, MutableCollection {
    public typealias Index = Int
    public typealias Indices = Range<Int>

    @inlinable public var startIndex: Int { 0 }
    @inlinable public var endIndex: Int { ends.last ?? 0 }
    @inlinable public var count: Int { ends.last ?? 0 }
    @inlinable public var isEmpty: Bool { chunks.isEmpty }
    @inlinable public func index(after i: Int) -> Int { i + 1 }
    @inlinable public func index(before i: Int) -> Int { i - 1 }

    @inlinable public subscript(position: Int) -> Element {
        get {
            precondition(position >= 0 && position < count, "index \(position) out of range 0..<\(count)")
            let (c, o) = locate(position)
            let items = chunks[c].items
            return items[items.startIndex + o]
        }
        set {
            precondition(position >= 0 && position < count, "index \(position) out of range 0..<\(count)")
            let (c0, o0) = locate(position)
            let (c, o) = splitIfLong(c0, offset: o0)
            modifyChunk(c) { $0[$0.startIndex + o] = newValue }
        }
    }

    public subscript(bounds: Range<Int>) -> Slice<ItemList> {
        get { Slice(base: self, bounds: bounds) }
        set { replaceSubrange(bounds, with: Array(newValue)) }
    }

    public struct Iterator: IteratorProtocol {
        @usableFromInline let chunks: [ItemChunk<Element>]
        @usableFromInline var c = 0
        @usableFromInline var items: ArraySlice<Element>
        @usableFromInline var i: Int

        @inlinable init(chunks: [ItemChunk<Element>]) {
            self.chunks = chunks
            items = chunks.first?.items ?? []
            i = items.startIndex
        }

        @inlinable public mutating func next() -> Element? {
            if i < items.endIndex {
                defer { i += 1 }
                return items[i]
            }
            c += 1
            guard c < chunks.count else { return nil }
            items = chunks[c].items
            i = items.startIndex + 1
            return items[items.startIndex]
        }
    }

    @inlinable public func makeIterator() -> Iterator { Iterator(chunks: chunks) }

    public func withContiguousStorageIfAvailable<R>(_ body: (UnsafeBufferPointer<Element>) throws -> R)
        rethrows -> R?
    {
        if chunks.isEmpty { return try [Element]().withUnsafeBufferPointer(body) }
        guard chunks.count == 1 else { return nil }
        return try chunks[0].items.withUnsafeBufferPointer(body)
    }
}

extension ItemList: RangeReplaceableCollection {
    @inlinable public mutating func append(_ element: Element) {
        if let c = chunks.indices.last, chunks[c].items.count < Self.chunkSize {
            if isKnownUniquelyReferenced(&chunks[c]) {
                chunks[c].items.append(element)
                chunks[c].filter?.add(KeyFilter.hash(element.itemKey))
            } else {
                var items = chunks[c].items
                items.append(element)
                var filter = chunks[c].filter
                filter?.add(KeyFilter.hash(element.itemKey))
                chunks[c] = ItemChunk(items, filter: filter)
            }
            ends[c] += 1
        } else {
            chunks.append(ItemChunk([element][...]))
            ends.append(count + 1)
        }
    }

    @inlinable public mutating func append<S: Sequence>(contentsOf newElements: S)
    where S.Element == Element {
        for element in newElements { append(element) }
    }

    @inlinable public mutating func replaceSubrange<C: Collection>(_ range: Range<Int>, with newElements: C)
    where C.Element == Element {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "range out of bounds")
        if range.lowerBound == count {
            append(contentsOf: newElements)
            return
        }
        if replaceInOneChunk(range, with: newElements) { return }
        // The chunks from the one holding the first position replaced to the one holding the
        // last are rebuilt from what they keep and the new elements, in chunks of `chunkSize`;
        // long chunks at either end are split first, so that what is rebuilt stays short.
        let first = locate(range.lowerBound)
        let (c0, o0) = splitIfLong(first.chunk, offset: first.offset)
        let last = locate(range.isEmpty ? range.lowerBound : range.upperBound - 1)
        let (c1, o1) = splitIfLong(last.chunk, offset: last.offset)
        let head = chunks[c0].items
        let tail = chunks[c1].items
        var kept = Array(head[head.startIndex..<(head.startIndex + o0)])
        kept.append(contentsOf: newElements)
        kept.append(contentsOf: tail[(tail.startIndex + (range.isEmpty ? o1 : o1 + 1))...])
        chunks.replaceSubrange(c0...c1, with: Self.cut(kept))
        rebuildEnds(from: c0)
    }

    /// A change inside one chunk that leaves it with 1 to `chunkSize` elements (a transaction
    /// inserted among others, a row replaced or removed) changes that chunk alone: its elements
    /// are copied only if another list shares them, and its filter gains the new keys rather than
    /// being built again (a filter may hold keys that its chunk no longer has), until it has had
    /// as many keys added as it is sized for. Returns false, changing nothing, for other changes,
    /// which rebuild the chunks they touch.
    @inlinable mutating func replaceInOneChunk<C: Collection>(_ range: Range<Int>, with newElements: C)
        -> Bool
    where C.Element == Element {
        let (c, offset) = locate(range.lowerBound)
        // No binding holds the chunk's elements or filter across the change below: one would be a
        // second reference to their storage, and the change would copy it.
        let oldCount = chunks[c].items.count
        guard offset + range.count <= oldCount else { return false }
        let newCount = oldCount - range.count + newElements.count
        guard newCount > 0 && newCount <= Self.chunkSize else { return false }
        let from = chunks[c].items.startIndex + offset
        // Keys are added to the filter while it has room; past that (keys removed and others
        // added, many times) it is built again from the chunk's keys.
        let rebuild = chunks[c].filter.map { $0.added + newElements.count > $0.capacity } ?? false
        if !isKnownUniquelyReferenced(&chunks[c]) {
            // A chunk of this list's own over the same elements and filter: changing them below
            // copies them, and the other lists keep theirs.
            chunks[c] = ItemChunk(chunks[c].items, filter: chunks[c].filter)
        }
        let chunk = chunks[c]
        chunk.items.replaceSubrange(from..<(from + range.count), with: newElements)
        if rebuild {
            chunk.filter = KeyFilter(chunk.items)
        } else if chunk.filter != nil {
            for element in newElements { chunk.filter!.add(KeyFilter.hash(element.itemKey)) }
        }
        let delta = newCount - oldCount
        if delta != 0 {
            for k in c..<ends.count { ends[k] += delta }
        }
        return true
    }

    /// Asks `shouldBeRemoved` once per element, in order. If it throws, the chunks before the one
    /// it threw in have lost their removed elements, the others are whole, and the list is sound.
    public mutating func removeAll(where shouldBeRemoved: (Element) throws -> Bool) rethrows {
        defer { rebuildEnds(from: 0) }
        var c = 0
        while c < chunks.count {
            let items = chunks[c].items
            if let first = try items.firstIndex(where: shouldBeRemoved) {
                var keep = Array(items[..<first])
                for element in items[(first + 1)...] {
                    if try !shouldBeRemoved(element) { keep.append(element) }
                }
                if keep.isEmpty {
                    chunks.remove(at: c)
                } else {
                    chunks[c] = ItemChunk(keep[...])
                    c += 1
                }
            } else {
                c += 1
            }
        }
    }

    public mutating func removeAll(keepingCapacity keepCapacity: Bool = false) {
        self = ItemList()
    }

    public mutating func reserveCapacity(_ n: Int) {}
}

extension ItemList: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: Element...) { self.init(elements) }
}

extension ItemList: Equatable {
    /// Equal elements in the same order (each element's own `==`); chunks that both lists hold
    /// are not compared again.
    @inlinable public static func == (a: ItemList, b: ItemList) -> Bool {
        guard a.count == b.count else { return false }
        var (ca, oa, cb, ob) = (0, 0, 0, 0)
        while ca < a.chunks.count {
            let x = a.chunks[ca].items
            let y = b.chunks[cb].items
            let n = Swift.min(x.count - oa, y.count - ob)
            // A run in the same storage holds the same elements; others are compared.
            if address(x, oa) != address(y, ob) {
                let (sx, sy) = (x.startIndex + oa, y.startIndex + ob)
                for k in 0..<n where x[sx + k] != y[sy + k] { return false }
            }
            oa += n
            ob += n
            if oa == x.count { (ca, oa) = (ca + 1, 0) }
            if ob == y.count { (cb, ob) = (cb + 1, 0) }
        }
        return true
    }
}

extension ItemList: Hashable {
    public func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        for element in self { hasher.combine(element) }
    }
}

extension ItemList: Codable where Element: Codable {
    /// A JSON array (or any unkeyed container) of the elements.
    public init(from decoder: any Decoder) throws {
        self.init(try [Element](from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.unkeyedContainer()
        for element in self { try c.encode(element) }
    }
}

extension ItemList: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String { array.description }
    public var debugDescription: String { "ItemList(\(array.debugDescription))" }
}
