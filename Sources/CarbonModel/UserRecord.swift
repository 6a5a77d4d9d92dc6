/// Everything CarbonStore keeps for one user: one record, one file.
///
/// `revision`, `createdAt` and `updatedAt` are maintained by the store: the revision increases by
/// one on every committed write.
public struct UserRecord: Sendable, Hashable, Codable {
    public var userID: String
    public var revision: UInt64
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    /// Kept in order of time, then id (UTF-8 byte order).
    ///
    /// The lists are `ItemList`s: used like arrays, but a changed copy of a record shares every
    /// chunk of elements that the change did not touch, so that an update costs what it changes.
    public var transactions: ItemList<Transaction>
    /// One response per question, in order of question id (UTF-8 byte order).
    public var responses: ItemList<QuestionResponse>
    /// Keys are compared byte for byte: `"\u{E9}"` and `"e\u{301}"` are two preferences.
    public var preferences: ExactDictionary<Preference>
    public var footprints: ItemList<Footprint>
    public var savings: ItemList<Saving>
    /// Sections of the file this version does not understand, written back unchanged.
    public var preservedSections: [PreservedSection]

    public init(
        userID: String, revision: UInt64 = 0, createdAt: Timestamp, updatedAt: Timestamp? = nil,
        transactions: ItemList<Transaction> = [], responses: ItemList<QuestionResponse> = [],
        preferences: ExactDictionary<Preference> = [:], footprints: ItemList<Footprint> = [],
        savings: ItemList<Saving> = [],
        preservedSections: [PreservedSection] = []
    ) {
        self.userID = userID
        self.revision = revision
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
        self.transactions = transactions
        self.responses = responses
        self.preferences = preferences
        self.footprints = footprints
        self.savings = savings
        self.preservedSections = preservedSections
    }

    enum CodingKeys: String, CodingKey {
        case userID = "userId", revision, createdAt, updatedAt, transactions, responses, preferences
        case footprints, savings
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        userID = try c.decode(String.self, forKey: .userID)
        revision = try c.decodeIfPresent(UInt64.self, forKey: .revision) ?? 0
        createdAt = try c.decode(Timestamp.self, forKey: .createdAt)
        updatedAt = try c.decodeIfPresent(Timestamp.self, forKey: .updatedAt) ?? createdAt
        transactions = try c.decodeIfPresent(ItemList<Transaction>.self, forKey: .transactions) ?? []
        responses = try c.decodeIfPresent(ItemList<QuestionResponse>.self, forKey: .responses) ?? []
        preferences =
            try c.decodeIfPresent(ExactDictionary<Preference>.self, forKey: .preferences) ?? [:]
        footprints = try c.decodeIfPresent(ItemList<Footprint>.self, forKey: .footprints) ?? []
        savings = try c.decodeIfPresent(ItemList<Saving>.self, forKey: .savings) ?? []
        preservedSections = []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(userID, forKey: .userID)
        try c.encode(revision, forKey: .revision)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(updatedAt, forKey: .updatedAt)
        try c.encode(transactions, forKey: .transactions)
        try c.encode(responses, forKey: .responses)
        try c.encode(preferences, forKey: .preferences)
        try c.encode(footprints, forKey: .footprints)
        try c.encode(savings, forKey: .savings)
    }
}

// Byte-exact equality: the store treats an unchanged record as "nothing to write", so a record
// whose only change is a spelling (NFC to NFD) must not compare equal to the old one.
extension UserRecord: ExactlyEquatable {
    public static func == (a: UserRecord, b: UserRecord) -> Bool { a.isExactlyEqual(to: b) }
    public func hash(into hasher: inout Hasher) { hashExactly(into: &hasher) }

    public func isExactlyEqual(to b: UserRecord) -> Bool {
        revision == b.revision && createdAt == b.createdAt && updatedAt == b.updatedAt
            && userID.isByteEqual(to: b.userID) && transactions == b.transactions
            && responses == b.responses && preferences == b.preferences && footprints == b.footprints
            && savings == b.savings && preservedSections == b.preservedSections
    }

    public func hashExactly(into hasher: inout Hasher) {
        userID.hashBytes(into: &hasher)
        hasher.combine(revision)
        hasher.combine(createdAt)
        hasher.combine(updatedAt)
        hasher.combine(transactions)
        hasher.combine(responses)
        hasher.combine(preferences)
        hasher.combine(footprints)
        hasher.combine(savings)
        hasher.combine(preservedSections)
    }
}

/// What an idempotent add did.
public enum UpsertOutcome: String, Sendable, Hashable {
    /// The item was new and was added.
    case inserted
    /// An item with the same id existed with other content and was replaced.
    case replaced
    /// An identical item was already there; nothing changed.
    case unchanged
}

/// An add whose id is already taken by different content, without permission to replace it.
public struct IDConflictError: Error, Sendable, Hashable, CustomStringConvertible {
    public var kind: String
    public var id: String
    public var userID: String

    public var description: String {
        "\(kind) '\(id)' of user '\(userID)' already exists with different content; replace it explicitly or choose another id"
    }
}

extension UserRecord {
    /// Adds a transaction, or confirms it is already there. An existing id with different content is
    /// replaced when `replace` is true and is an `IDConflictError` otherwise.
    @discardableResult
    public mutating func upsert(_ t: Transaction, replace: Bool = false) throws(IDConflictError)
        -> UpsertOutcome
    {
        transactions.buildKeyFilters()
        if let i = transactions.firstIndex(ofKey: t.id) {
            if transactions[i] == t { return .unchanged }
            guard replace else { throw IDConflictError(kind: "transaction", id: t.id, userID: userID) }
            transactions.remove(at: i)
            insertSorted(t)
            return .replaced
        }
        insertSorted(t)
        return .inserted
    }

    /// Whether `a` sorts before `b`: by time, then by the UTF-8 bytes of the id.
    static func inOrder(_ a: Transaction, before b: Transaction) -> Bool {
        a.time != b.time ? a.time < b.time : a.id.isBytewiseLess(than: b.id)
    }

    /// Removes the transaction with exactly this id (byte for byte); returns it, or nil if there was
    /// none.
    @discardableResult
    public mutating func removeTransaction(id: String) -> Transaction? {
        transactions.buildKeyFilters()
        guard let i = transactions.firstIndex(ofKey: id) else { return nil }
        return transactions.remove(at: i)
    }

    /// The transaction with exactly this id (byte for byte), if there is one.
    public func transaction(id: String) -> Transaction? {
        transactions.firstIndex(ofKey: id).map { transactions[$0] }
    }

    /// The response to exactly this question id (byte for byte), if there is one.
    public func response(questionID: String) -> QuestionResponse? {
        responses.firstIndex(ofKey: questionID).map { responses[$0] }
    }

    /// The footprint with exactly this id (byte for byte), if there is one.
    public func footprint(id: String) -> Footprint? {
        footprints.firstIndex(ofKey: id).map { footprints[$0] }
    }

    /// The saving with exactly this id (byte for byte), if there is one.
    public func saving(id: String) -> Saving? { savings.firstIndex(ofKey: id).map { savings[$0] } }

    private mutating func insertSorted(_ t: Transaction) {
        transactions.insert(t, at: Self.insertionIndex(of: t, in: transactions))
    }

    /// Where `t` goes in `list`: the first place from which `t` comes before every transaction
    /// (the end if there is none). On a list in time order, which `upsert` keeps, that is the
    /// place after the last transaction that `t` does not come before. Most transactions arrive
    /// in time order, so the search starts from the end, in steps that double (1, 2, 4, ...), and
    /// then halves the last one: a transaction that arrives `d` places late costs about
    /// 2 log2(d) comparisons, not `d`.
    static func insertionIndex(of t: Transaction, in list: ItemList<Transaction>) -> Int {
        // `t` comes before every transaction from `hi` on; not before any one before `lo`.
        var hi = list.endIndex
        var lo = 0
        var step = 1
        while hi - step >= 0 {
            let probe = hi - step
            guard Self.inOrder(t, before: list[probe]) else {
                lo = probe + 1
                break
            }
            hi = probe
            step *= 2
        }
        while lo < hi {
            let mid = (lo + hi) / 2
            if Self.inOrder(t, before: list[mid]) { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    /// Records the latest answer to a question, replacing an earlier one.
    @discardableResult
    public mutating func answer(_ r: QuestionResponse) -> UpsertOutcome {
        responses.buildKeyFilters()
        if let i = responses.firstIndex(ofKey: r.questionID) {
            if responses[i] == r { return .unchanged }
            responses[i] = r
            return .replaced
        }
        // Responses are in order of question id: the first one after the new id, by halving.
        var lo = 0
        var hi = responses.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if r.questionID.isBytewiseLess(than: responses[mid].questionID) { hi = mid } else { lo = mid + 1 }
        }
        responses.insert(r, at: lo)
        return .inserted
    }

    /// Sets a preference. Setting the value it already has changes nothing.
    @discardableResult
    public mutating func setPreference(_ key: String, value: String, at time: Timestamp) -> UpsertOutcome {
        if let old = preferences[key] {
            if old.value.isByteEqual(to: value) { return .unchanged }
            preferences[key] = Preference(value: value, updatedAt: time)
            return .replaced
        }
        preferences[key] = Preference(value: value, updatedAt: time)
        return .inserted
    }

    /// Removes a preference; returns whether it existed.
    @discardableResult
    public mutating func removePreference(_ key: String) -> Bool {
        preferences.removeValue(forKey: key) != nil
    }

    /// Adds or replaces a footprint by id (recalculation replaces the earlier result).
    @discardableResult
    public mutating func upsert(_ f: Footprint) -> UpsertOutcome { Self.upsert(f, in: &footprints) }

    /// Adds or replaces a saving by id.
    @discardableResult
    public mutating func upsert(_ s: Saving) -> UpsertOutcome { Self.upsert(s, in: &savings) }

    private static func upsert<Item: KeyedItem>(_ item: Item, in items: inout ItemList<Item>) -> UpsertOutcome
    {
        items.buildKeyFilters()
        guard let i = items.firstIndex(ofKey: item.itemKey) else {
            items.append(item)
            return .inserted
        }
        if items[i] == item { return .unchanged }
        items[i] = item
        return .replaced
    }
}
