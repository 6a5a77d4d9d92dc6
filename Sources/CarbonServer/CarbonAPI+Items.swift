import CarbonFormat
import CarbonModel
import CarbonStore
import HTTPTypes
import Hummingbird

/// The routes of a user's items: transactions, responses, preferences, footprints, savings, summary.
extension CarbonAPI {
    struct ItemResult: Encodable {
        var id: String
        var status: String
        var message: String?
    }

    struct BatchResult: Encodable {
        var userId: String
        var revision: UInt64
        var results: [ItemResult]
    }

    static func status(_ outcome: UpsertOutcome) -> String {
        switch outcome {
        case .inserted: return "added"
        case .replaced: return "replaced"
        case .unchanged: return "unchanged"
        }
    }

    // MARK: - Transactions

    func addTransactions(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let id = try userID(context)
        let items = try Inputs.batch(
            try await body(request), name: "transactions", maxBatch: configuration.maxBatch)
        var transactions: [Transaction] = []
        for (i, item) in items.enumerated() {
            transactions.append(try Inputs.transaction(item, at: "transactions[\(i)]"))
        }
        let result = try await store.update(id) { record in
            transactions.map { t -> ItemResult in
                do {
                    return ItemResult(id: t.id, status: Self.status(try record.upsert(t)))
                } catch {
                    return ItemResult(
                        id: t.id, status: "conflicting",
                        message:
                            "transaction '\(t.id)' of user '\(id)' already exists with different content; nothing of this item was written (send it with another id, or delete the old one first)"
                    )
                }
            }
        }
        return try JSONBody.response(
            BatchResult(userId: id, revision: result.record.revision, results: result.value))
    }

    struct TransactionPage: Encodable {
        var transactions: [Transaction]
        var nextCursor: String?
    }

    func listTransactions(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let id = try userID(context)
        let q = try query(request, paged: true)
        var after: (time: Timestamp, id: String)?
        if let cursor = q.cursor {
            guard let bytes = [UInt8](hexDigits: cursor), let text = String(validating: bytes, as: UTF8.self),
                let colon = text.firstIndex(of: ":"), let ms = Int64(text[..<colon])
            else { throw APIError.invalid("not a cursor this service gave out", field: "cursor") }
            after = (Timestamp(millisecondsSince1970: ms), String(text[text.index(after: colon)...]))
        }
        let record = try await record(id)
        var page: [Transaction] = []
        var more = false
        for t in record.transactions where Self.inRange(t.time, q) {
            if let after,
                t.time < after.time || (t.time == after.time && !after.id.isBytewiseLess(than: t.id))
            {
                continue
            }
            if page.count == q.limit {
                more = true
                break
            }
            page.append(t)
        }
        let next =
            more ? page.last.map { hexString(Array("\($0.time.millisecondsSince1970):\($0.id)".utf8)) } : nil
        return try JSONBody.response(TransactionPage(transactions: page, nextCursor: next))
    }

    func getTransaction(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let id = try userID(context)
        let transactionID = try parameter("transactionId", context)
        guard let t = try await record(id).transaction(id: transactionID) else {
            throw APIError.notFound("user '\(id)' has no transaction '\(transactionID)'")
        }
        return try JSONBody.response(t)
    }

    struct DeletedItem: Encodable {
        var userId: String
        var revision: UInt64
        var deleted: String
    }

    func deleteTransaction(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let id = try userID(context)
        let transactionID = try parameter("transactionId", context)
        let result = try await store.update(id) { record in record.removeTransaction(id: transactionID) != nil
        }
        // After a lost answer, "nothing to remove" means the earlier attempt removed it.
        guard result.value || result.outcome == .asRequestedAfterRetry else {
            throw APIError.notFound("user '\(id)' has no transaction '\(transactionID)'")
        }
        return try JSONBody.response(
            DeletedItem(userId: id, revision: result.record.revision, deleted: transactionID))
    }

    // MARK: - Responses

    struct ResponseResult: Encodable {
        var userId: String
        var revision: UInt64
        var status: String
        var response: QuestionResponse
    }

    func putResponse(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let id = try userID(context)
        let questionID = try parameter("questionId", context)
        let f = try Fields(try await body(request), at: "", allowed: ["answer", "answeredAt"])
        let answer = try Inputs.answer(try f.required("answer"), at: "answer")
        let answeredAt = try f.optionalTime("answeredAt")
        let now = store.options.clock.now()
        let result = try await store.update(id) { record -> (UpsertOutcome, QuestionResponse) in
            // Without answeredAt, the same answer again keeps the time first recorded.
            if answeredAt == nil, let existing = record.response(questionID: questionID),
                existing.answer == answer
            {
                return (.unchanged, existing)
            }
            let response = QuestionResponse(
                questionID: questionID, answer: answer, answeredAt: answeredAt ?? now)
            return (record.answer(response), response)
        }
        return try JSONBody.response(
            ResponseResult(
                userId: id, revision: result.record.revision, status: Self.status(result.value.0),
                response: result.value.1))
    }

    struct ResponseList: Encodable { var responses: [QuestionResponse] }

    func listResponses(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        try JSONBody.response(ResponseList(responses: try await record(try userID(context)).responses.array))
    }

    // MARK: - Preferences

    static func values(_ preferences: ExactDictionary<Preference>) -> ExactDictionary<String> {
        var out = ExactDictionary<String>()
        for (key, preference) in preferences { out[key] = preference.value }
        return out
    }

    func getPreferences(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let record = try await record(try userID(context))
        var response = try JSONBody.response(Self.values(record.preferences))
        response.headers[.xRevision] = String(record.revision)
        return response
    }

    func patchPreferences(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let id = try userID(context)
        guard case .object(let members) = try await body(request, mergePatch: true) else {
            throw APIError.invalid(
                "a merge patch of the preferences is an object of strings (set) and nulls (remove)")
        }
        var changes: [(key: String, value: String?)] = []
        for (key, value) in members {
            guard !key.isEmpty else {
                throw APIError.invalid("a preference key must not be empty", field: key)
            }
            guard key.utf8.count <= Inputs.maxKeyBytes else {
                throw APIError.invalid(
                    "a preference key is at most \(Inputs.maxKeyBytes) bytes", field: String(key.prefix(64)))
            }
            switch value {
            case .null: changes.append((key, nil))
            case .string(let s):
                guard s.utf8.count <= 4096 else {
                    throw APIError.invalid("a preference value is at most 4096 bytes", field: key)
                }
                changes.append((key, s))
            default:
                throw APIError.invalid(
                    "a preference value is a string (to set it) or null (to remove it), not \(value.kindName)",
                    field: key)
            }
        }
        let now = store.options.clock.now()
        let result = try await store.update(id) { record in
            for change in changes {
                if let value = change.value {
                    record.setPreference(change.key, value: value, at: now)
                } else {
                    record.removePreference(change.key)
                }
            }
        }
        var response = try JSONBody.response(Self.values(result.record.preferences))
        response.headers[.xRevision] = String(result.record.revision)
        return response
    }

    // MARK: - Footprints and savings

    func addFootprints(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let id = try userID(context)
        let items = try Inputs.batch(
            try await body(request), name: "footprints", maxBatch: configuration.maxBatch)
        var footprints: [Footprint] = []
        for (i, item) in items.enumerated() {
            footprints.append(try Inputs.footprint(item, at: "footprints[\(i)]"))
        }
        let result = try await store.update(id) { record in
            footprints.map { ItemResult(id: $0.id, status: Self.status(record.upsert($0))) }
        }
        return try JSONBody.response(
            BatchResult(userId: id, revision: result.record.revision, results: result.value))
    }

    func addSavings(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let id = try userID(context)
        let items = try Inputs.batch(
            try await body(request), name: "savings", maxBatch: configuration.maxBatch)
        var savings: [Saving] = []
        for (i, item) in items.enumerated() { savings.append(try Inputs.saving(item, at: "savings[\(i)]")) }
        let result = try await store.update(id) { record in
            savings.map { ItemResult(id: $0.id, status: Self.status(record.upsert($0))) }
        }
        return try JSONBody.response(
            BatchResult(userId: id, revision: result.record.revision, results: result.value))
    }

    /// A footprint's time: the start of its period, else the time of its transaction, else when it
    /// was calculated.
    static func time(of f: Footprint, in record: UserRecord) -> Timestamp {
        if let p = f.period { return p.start }
        if let tid = f.transactionID, let t = record.transaction(id: tid) { return t.time }
        return f.calculatedAt
    }

    struct FootprintList: Encodable { var footprints: [Footprint] }
    struct SavingList: Encodable { var savings: [Saving] }

    func listFootprints(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let q = try query(request, paged: false)
        let record = try await record(try userID(context))
        // By time, then by id (UTF-8 byte order), as transactions are: the record keeps them in the
        // order they were added.
        let timed = record.footprints.compactMap { f -> (time: Timestamp, footprint: Footprint)? in
            let time = Self.time(of: f, in: record)
            return Self.inRange(time, q) ? (time, f) : nil
        }
        let sorted = timed.sorted {
            $0.time != $1.time ? $0.time < $1.time : $0.footprint.id.isBytewiseLess(than: $1.footprint.id)
        }
        return try JSONBody.response(FootprintList(footprints: sorted.map(\.footprint)))
    }

    func listSavings(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let q = try query(request, paged: false)
        let record = try await record(try userID(context))
        // By the start of their period, then by id (UTF-8 byte order).
        let sorted = record.savings.filter { Self.inRange($0.period.start, q) }.sorted {
            $0.period.start != $1.period.start
                ? $0.period.start < $1.period.start : $0.id.isBytewiseLess(than: $1.id)
        }
        return try JSONBody.response(SavingList(savings: sorted))
    }

    // MARK: - Summary

    struct Summary: Encodable {
        struct Month: Encodable {
            var month: String
            var kgCO2e: Double
        }
        struct Category: Encodable {
            var category: String
            var kgCO2e: Double
        }
        var userId: String
        var from: Timestamp?
        var to: Timestamp?
        var kgCO2e: Double
        var byMonth: [Month]
        var byCategory: [Category]
        var savedKgCO2e: Double

        enum CodingKeys: String, CodingKey { case userId, from, to, kgCO2e, byMonth, byCategory, savedKgCO2e }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(userId, forKey: .userId)
            try c.encode(from, forKey: .from)
            try c.encode(to, forKey: .to)
            try c.encode(kgCO2e, forKey: .kgCO2e)
            try c.encode(byMonth, forKey: .byMonth)
            try c.encode(byCategory, forKey: .byCategory)
            try c.encode(savedKgCO2e, forKey: .savedKgCO2e)
        }
    }

    static func kilograms(_ milligrams: Int128) -> Double { Double(milligrams) / 1_000_000 }

    func summary(_ request: Request, _ context: CarbonRequestContext) async throws -> Response {
        let id = try userID(context)
        let q = try query(request, paged: false)
        let record = try await record(id)
        var total: Int128 = 0
        var months: [String: Int128] = [:]
        var categories: [ExactString: Int128] = [:]
        for f in record.footprints {
            let t = Self.time(of: f, in: record)
            guard Self.inRange(t, q) else { continue }
            let mg = Int128(f.co2e.milligrams)
            total += mg
            months[String(t.iso8601.prefix(7)), default: 0] += mg
            categories[ExactString(f.category), default: 0] += mg
        }
        var saved: Int128 = 0
        for s in record.savings where Self.inRange(s.period.start, q) { saved += Int128(s.co2e.milligrams) }
        return try JSONBody.response(
            Summary(
                userId: id, from: q.from, to: q.to, kgCO2e: Self.kilograms(total),
                byMonth: months.keys.sorted().map {
                    Summary.Month(month: $0, kgCO2e: Self.kilograms(months[$0]!))
                },
                byCategory: categories.keys.sorted().map {
                    Summary.Category(category: $0.string, kgCO2e: Self.kilograms(categories[$0]!))
                },
                savedKgCO2e: Self.kilograms(saved)))
    }
}
