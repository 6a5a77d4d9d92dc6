import CarbonModel

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same sequence everywhere.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform integer in `range`.
    public mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    /// True with probability `p`.
    public mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }

    public mutating func pick<C: RandomAccessCollection>(_ items: C) -> C.Element where C.Index == Int {
        items[items.startIndex + int(0...(items.count - 1))]
    }
}

/// Deterministic records for tests and benchmarks. The same arguments always give the same record.
///
/// Every record satisfies the model's invariants: transactions in order of (time, id) with unique
/// ids, responses in order of question id with unique ids, unique footprint and saving ids.
public enum RecordGenerator {
    /// A shape for `workload(_:seed:)`; `.w1` and `.w2` are the reference users of
    /// docs/ARCHITECTURE.md section 6.
    public struct Workload: Sendable, Hashable {
        public var transactions: Int
        public var merchants: Int
        public var mccs: Int
        public var currencies: Int
        public var responses: Int
        public var preferences: Int
        public var footprints: Int
        public var savings: Int
        public var months: Int

        public init(
            transactions: Int, merchants: Int, mccs: Int, currencies: Int, responses: Int, preferences: Int,
            footprints: Int, savings: Int, months: Int = 12
        ) {
            self.transactions = transactions
            self.merchants = merchants
            self.mccs = mccs
            self.currencies = currencies
            self.responses = responses
            self.preferences = preferences
            self.footprints = footprints
            self.savings = savings
            self.months = months
        }

        /// A typical user: 1,000 transactions over 12 months, about 300 merchants, 40 MCCs,
        /// 2 currencies, 40 responses, 20 preferences, 1,000 footprints, 50 savings.
        public static let w1 = Workload(
            transactions: 1000, merchants: 300, mccs: 40, currencies: 2, responses: 40, preferences: 20,
            footprints: 1000, savings: 50)

        /// A heavy user: W1 with every count scaled by 20 (the MCC and currency vocabularies stay).
        public static let w2 = Workload(
            transactions: 20000, merchants: 6000, mccs: 40, currencies: 2, responses: 800, preferences: 400,
            footprints: 20000, savings: 1000)
    }

    // MARK: Varied records

    /// A varied record for property tests: sometimes empty, often with Unicode (emoji, combining
    /// marks, right-to-left text, canonically equivalent NFC/NFD spellings, NUL), extreme amounts
    /// (`Int64.min`/`max` minor units), extreme times, optional fields nil or set, metadata.
    ///
    /// - Parameters:
    ///   - isoSafe: keep every time within `Timestamp.earliestISO...latestISO` and every value within
    ///     what the JSON form holds exactly (amounts above `Int64.min`, CO2e within ±10^12 mg,
    ///     doubles finite), for JSON round-trip tests. When false, times are any `Int64`.
    ///   - maxItems: the most items of each kind.
    ///   - preservedSections: also add up to three unknown sections (tags 6...0x7FFF, random flags
    ///     and bytes), as a newer writer would leave them. They have no JSON form.
    public static func record(
        seed: UInt64, isoSafe: Bool = false, maxItems: Int = 20, preservedSections: Bool = false
    ) -> UserRecord {
        var g = Gen(rng: SeededRandom(seed: seed ^ 0x5EED_CA4B_0000_0000), isoSafe: isoSafe)
        let userID = g.rng.chance(0.5) ? "user-\(seed)" : g.string(nonEmpty: true)
        let created = g.time()
        var record = UserRecord(
            userID: userID,
            revision: g.rng.chance(0.1) ? UInt64.max - UInt64(g.rng.int(0...3)) : UInt64(g.rng.int(0...1000)),
            createdAt: created, updatedAt: g.rng.chance(0.3) ? created : g.time())
        if seed % 7 == 0 { return record }  // an empty record (no parts) every seventh seed
        let sizes = (0..<5).map { _ in g.rng.chance(0.15) ? 0 : g.rng.int(1...max(1, maxItems)) }

        var ids = Set<String>()
        for i in 0..<sizes[0] {
            var t = Transaction(id: g.uniqueID(&ids, i), time: g.time(), amount: g.money())
            if g.rng.chance(0.7) { t.merchant = g.string() }
            if g.rng.chance(0.7) { t.mcc = g.rng.chance(0.1) ? 9999 : UInt16(g.rng.int(0...9999)) }
            if g.rng.chance(0.6) { t.category = g.string() }
            if g.rng.chance(0.4) { t.description = g.string() }
            if g.rng.chance(0.5) { t.accountID = g.string() }
            if g.rng.chance(0.3) {
                for _ in 0..<g.rng.int(1...3) { t.metadata[g.string()] = g.string() }
            }
            record.transactions.append(t)
        }
        record.transactions.sort { ($0.time, $0.id) < ($1.time, $1.id) }

        var questions = Set<String>()
        for i in 0..<sizes[1] {
            record.responses.append(
                QuestionResponse(
                    questionID: g.uniqueID(&questions, i), answer: g.answer(), answeredAt: g.time()))
        }
        record.responses.sort { $0.questionID < $1.questionID }

        for _ in 0..<sizes[2] {
            record.preferences[g.string()] = Preference(value: g.string(), updatedAt: g.time())
        }

        ids = []
        for i in 0..<sizes[3] {
            let transactionID = g.rng.chance(0.6) ? record.transactions.randomElement(using: &g.rng)?.id : nil
            record.footprints.append(
                Footprint(
                    id: g.uniqueID(&ids, i),
                    transactionID: transactionID ?? (g.rng.chance(0.2) ? g.string() : nil),
                    period: g.rng.chance(0.5) ? g.period() : nil, co2e: g.co2e(), category: g.string(),
                    methodology: g.rng.chance(0.8) ? "ghg-spend-v3.2" : g.string(), calculatedAt: g.time()))
        }

        ids = []
        for i in 0..<sizes[4] {
            record.savings.append(
                Saving(
                    id: g.uniqueID(&ids, i), actionID: g.string(), co2e: g.co2e(),
                    moneySaved: g.rng.chance(0.6) ? g.money() : nil, period: g.period(), recordedAt: g.time())
            )
        }

        if preservedSections {
            for _ in 0..<g.rng.int(0...3) {
                let payload = (0..<g.rng.int(0...100)).map { _ in UInt8.random(in: 0...255, using: &g.rng) }
                record.preservedSections.append(
                    PreservedSection(
                        tag: UInt16(g.rng.int(6...0x7FFF)),
                        flags: UInt16.random(in: 0...UInt16.max, using: &g.rng),
                        payload: payload))
            }
        }
        return record
    }

    /// Sample strings that tend to break things.
    public static let awkwardStrings: [String] = [
        "", " ", "a", "coffee", "Café", "Cafe\u{301}", "na\u{EF}ve", "nai\u{308}ve", "東京", "Ελληνικά",
        "עברית",
        "مرحبا بالعالم", "👩🏽‍💻", "🇺🇦🇪🇺", "e\u{301}\u{302}\u{303}", "Z\u{324}\u{354}\u{367}\u{311}\u{313}", "\u{0}",
        "a\u{0}b", "tab\tnew\nline\r\n", "\"quotes\" \\ backslash /", "\u{202E}override\u{202C}",
        "\u{FEFF}bom",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ß", "İstanbul", "ﷺ", "\u{10FFFF}", "\u{7F}\u{80}\u{FFFD}",
        String(repeating: "x", count: 300),
        String(repeating: "é", count: 70),
    ]

    // MARK: Workloads

    /// The reference users of docs/ARCHITECTURE.md section 6. Times start at 2025-01-01T00:00:00Z.
    public static func workload(_ w: Workload, seed: UInt64 = 1) -> UserRecord {
        var rng = SeededRandom(seed: seed ^ 0x00C0_FFEE_0000_0001)
        let start: Int64 = 1_735_689_600_000
        let span = Int64(w.months) * 30 * 86_400_000 + Int64(w.months / 2) * 86_400_000
        let mccs = Array(realMCCs.prefix(max(1, min(w.mccs, realMCCs.count))))
        let currencies = Array(["EUR", "USD", "GBP", "CHF", "JPY"].prefix(max(1, w.currencies))).map {
            CurrencyCode($0)!
        }
        // Merchants with a fixed MCC each; names from word lists, a few with non-ASCII letters.
        var merchantNames: [String] = []
        var seen = Set<String>()
        while merchantNames.count < w.merchants {
            var name = "\(rng.pick(merchantWords1)) \(rng.pick(merchantWords2))"
            if rng.chance(0.3) { name += " \(rng.pick(merchantSuffixes))" }
            if !seen.insert(name).inserted { name += " \(merchantNames.count)" }
            seen.insert(name)
            merchantNames.append(name)
        }
        let merchantMCC = merchantNames.map { _ in rng.pick(mccs) }
        let accounts = ["acc-checking-01", "acc-credit-02"]

        var transactions: [Transaction] = []
        transactions.reserveCapacity(w.transactions)
        for _ in 0..<w.transactions {
            // Skewed choice: a few merchants are frequent, most are occasional.
            let u = Double.random(in: 0..<1, using: &rng)
            let m = min(merchantNames.count - 1, Int(u * u * Double(merchantNames.count)))
            let mcc = merchantMCC[m]
            let currency = rng.chance(0.9) ? currencies[0] : currencies[currencies.count - 1]
            let refund = rng.chance(0.03)
            let cents = Int64(rng.int(100...(rng.chance(0.9) ? 8_000 : 120_000)))
            var t = Transaction(
                id: hexID(&rng, prefix: "txn_"),
                time: Timestamp(millisecondsSince1970: start + Int64.random(in: 0..<span, using: &rng)),
                amount: Money(minorUnits: refund ? -cents : cents, currency: currency),
                merchant: merchantNames[m],
                mcc: mcc.code, category: mcc.category, accountID: rng.chance(0.7) ? accounts[0] : accounts[1])
            if rng.chance(0.5) {
                t.description = "CARD \(rng.int(1000...9999)) \(merchantNames[m].uppercased())"
            }
            if rng.chance(0.2) {
                t.metadata = ["source": "open-banking", "status": rng.chance(0.9) ? "booked" : "pending"]
            }
            transactions.append(t)
        }
        transactions.sort { ($0.time, $0.id) < ($1.time, $1.id) }

        var responses: [QuestionResponse] = []
        for i in 0..<w.responses {
            let answer: Answer
            switch i % 4 {
            case 0: answer = .boolean(rng.chance(0.5))
            case 1: answer = .number(Double(rng.int(0...500)) / 4)
            case 2: answer = .text(rng.pick(["vegetarian", "electric car", "heat pump", "never", "weekly"]))
            default:
                answer = .choices(
                    Array(["bus", "train", "bike", "car", "plane"].shuffled(using: &rng).prefix(2)))
            }
            responses.append(
                QuestionResponse(
                    questionID: "q\(String(1000 + i).dropFirst())-\(rng.pick(questionTopics))",
                    answer: answer,
                    answeredAt: Timestamp(
                        millisecondsSince1970: start + Int64.random(in: 0..<span, using: &rng))))
        }
        responses.sort { $0.questionID < $1.questionID }

        var preferences = ExactDictionary<Preference>()
        for i in 0..<w.preferences {
            let key = i < preferenceKeys.count ? preferenceKeys[i] : "custom.setting-\(i)"
            preferences[key] = Preference(
                value: rng.pick(["on", "off", "metric", "EUR", "weekly", "en-GB", "dark"]),
                updatedAt: Timestamp(millisecondsSince1970: start + Int64.random(in: 0..<span, using: &rng)))
        }

        var footprints: [Footprint] = []
        footprints.reserveCapacity(w.footprints)
        for i in 0..<w.footprints {
            if i < transactions.count {
                let t = transactions[i]
                footprints.append(
                    Footprint(
                        id: "fp_" + t.id.dropFirst(4), transactionID: t.id,
                        co2e: CO2e(milligrams: abs(t.amount.minorUnits) * Int64(rng.int(200...4_000))),
                        category: t.category ?? "other", methodology: "ghg-spend-v3.2",
                        calculatedAt: Timestamp(millisecondsSince1970: t.time.millisecondsSince1970 + 60_000))
                )
            } else {
                let month = Int64(i % max(1, w.months))
                let ps = start + month * 30 * 86_400_000
                footprints.append(
                    Footprint(
                        id: hexID(&rng, prefix: "fp_"),
                        period: Period(
                            start: Timestamp(millisecondsSince1970: ps),
                            end: Timestamp(millisecondsSince1970: ps + 30 * 86_400_000)),
                        co2e: CO2e(milligrams: Int64(rng.int(1_000_000...900_000_000))), category: "monthly",
                        methodology: "ghg-spend-v3.2",
                        calculatedAt: Timestamp(millisecondsSince1970: ps + 31 * 86_400_000)))
            }
        }

        var savings: [Saving] = []
        for i in 0..<w.savings {
            let ps = start + Int64(i % max(1, w.months)) * 30 * 86_400_000
            savings.append(
                Saving(
                    id: "sv_\(i)", actionID: rng.pick(savingActions),
                    co2e: CO2e(milligrams: Int64(rng.int(10_000...90_000_000))),
                    moneySaved: rng.chance(0.6)
                        ? Money(minorUnits: Int64(rng.int(100...20_000)), currency: currencies[0]) : nil,
                    period: Period(
                        start: Timestamp(millisecondsSince1970: ps),
                        end: Timestamp(millisecondsSince1970: ps + 30 * 86_400_000)),
                    recordedAt: Timestamp(millisecondsSince1970: ps + 30 * 86_400_000 + 3_600_000)))
        }

        return UserRecord(
            userID: "user-\(seed)@example.com", revision: UInt64(w.transactions),
            createdAt: Timestamp(millisecondsSince1970: start),
            updatedAt: Timestamp(millisecondsSince1970: start + span),
            transactions: ItemList(transactions), responses: ItemList(responses), preferences: preferences,
            footprints: ItemList(footprints), savings: ItemList(savings))
    }

    private static func hexID(_ rng: inout SeededRandom, prefix: String) -> String {
        let digits = Array("0123456789abcdef")
        var s = prefix
        for _ in 0..<20 { s.append(digits[rng.int(0...15)]) }
        return s
    }

    private static let realMCCs: [(code: UInt16, category: String)] = [
        (5411, "groceries"), (5812, "restaurants"), (5814, "fast-food"), (5541, "fuel"),
        (4111, "public-transport"),
        (4121, "taxi"), (4511, "flights"), (7011, "hotels"), (5311, "department-stores"), (5651, "clothing"),
        (5732, "electronics"), (5912, "pharmacy"), (4900, "utilities"), (4814, "telecom"), (5999, "retail"),
        (5942, "books"), (5200, "home-improvement"), (5712, "furniture"), (7832, "cinema"), (5813, "bars"),
        (5499, "food-stores"), (5462, "bakeries"), (4112, "rail"), (7512, "car-rental"), (5533, "auto-parts"),
        (8011, "doctors"), (8021, "dentists"), (8220, "education"), (7997, "sports-clubs"),
        (5941, "sporting-goods"),
        (5691, "clothing"), (5661, "shoes"), (5311, "department-stores"), (5300, "wholesale"),
        (5921, "liquor"),
        (5993, "tobacco"), (5995, "pets"), (7230, "hair-beauty"), (4784, "tolls"), (7523, "parking"),
        (5045, "computers"), (5094, "jewellery"), (7299, "services"), (4722, "travel-agencies"),
    ]
    private static let merchantWords1 = [
        "Green", "City", "Corner", "Royal", "Blue", "Happy", "Urban", "Nordic", "Golden", "Fresh", "Café",
        "Bäckerei",
        "Old Town", "River", "Sunny", "Market", "Metro", "Alpine", "Coastal", "Little",
    ]
    private static let merchantWords2 = [
        "Grocer", "Bakery", "Kitchen", "Pharmacy", "Books", "Garage", "Cinema", "Hotel", "Outfitters",
        "Electronics",
        "Bistro", "Fuel", "Taxi", "Rail", "Hardware", "Florist", "Deli", "Boutique", "Pub", "Müller",
    ]
    private static let merchantSuffixes = ["Ltd", "GmbH", "SA", "& Co", "Express", "Online", "24h", "BV"]
    private static let questionTopics = [
        "diet", "car-type", "commute", "heating", "flights-per-year", "household-size", "renewables",
        "recycling",
    ]
    private static let preferenceKeys = [
        "units", "currency", "language", "theme", "notifications.email", "notifications.push",
        "digest.frequency",
        "privacy.share-anonymised", "goals.monthly-kg", "onboarding.done", "timezone", "region",
        "dashboard.layout",
        "reports.format", "beta.features", "accessibility.contrast", "marketing.opt-in", "home.size",
        "car.fuel",
        "diet.type",
    ]
    private static let savingActions = [
        "switch-to-train", "bike-commute", "heat-pump", "led-lighting", "meat-free-days", "second-hand",
        "green-tariff",
        "insulation", "car-share", "no-flight",
    ]
}

/// The state of one `record(seed:...)` call.
private struct Gen {
    var rng: SeededRandom
    let isoSafe: Bool

    mutating func string(nonEmpty: Bool = false) -> String {
        var s: String
        switch rng.int(0...9) {
        case 0...2: s = rng.pick(RecordGenerator.awkwardStrings)
        case 3...5: s = ascii()
        case 6, 7:
            s = rng.pick(RecordGenerator.awkwardStrings) + ascii() + rng.pick(RecordGenerator.awkwardStrings)
        default: s = scalars()
        }
        if nonEmpty, s.isEmpty { s = "u" }
        return s
    }

    mutating func ascii() -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.:/@")
        return String((0..<rng.int(0...24)).map { _ in rng.pick(letters) })
    }

    /// Random valid scalars from assorted planes (never a surrogate, which String cannot hold).
    mutating func scalars() -> String {
        let ranges: [ClosedRange<UInt32>] = [
            0x00...0x7F, 0xA0...0x2FF, 0x300...0x36F, 0x590...0x6FF, 0x900...0x97F, 0x4E00...0x9FFF,
            0xE000...0xFFFD,
            0x1F300...0x1FAFF, 0x10000...0x10FFFF,
        ]
        var s = String.UnicodeScalarView()
        for _ in 0..<rng.int(1...12) {
            let range = rng.pick(ranges)
            s.append(Unicode.Scalar(UInt32.random(in: range, using: &rng))!)
        }
        return String(s)
    }

    /// An id not equal (under Swift's canonical equivalence) to one already used.
    mutating func uniqueID(_ used: inout Set<String>, _ i: Int) -> String {
        var id = rng.chance(0.5) ? "id-\(rng.int(0...999))" : string()
        if used.contains(id) { id += "#\(i)" }
        while used.contains(id) { id += "+" }
        used.insert(id)
        return id
    }

    mutating func time() -> Timestamp {
        let lo = Timestamp.earliestISO.millisecondsSince1970
        let hi = Timestamp.latestISO.millisecondsSince1970
        let ms: Int64
        switch rng.int(0...9) {
        case 0:
            ms =
                isoSafe
                ? rng.pick([lo, hi, 0, -1]) : rng.pick([Int64.min, Int64.max, lo - 1, hi + 1, 0, -1])
        case 1:
            ms =
                isoSafe
                ? Int64.random(in: lo...hi, using: &rng) : Int64.random(in: .min ... .max, using: &rng)
        default: ms = 1_735_689_600_000 + Int64.random(in: -400_000_000_000...400_000_000_000, using: &rng)
        }
        return Timestamp(millisecondsSince1970: ms)
    }

    mutating func period() -> Period {
        let a = time()
        if rng.chance(0.8) {
            let end = a.millisecondsSince1970.addingReportingOverflow(Int64(rng.int(0...2_678_400_000)))
            if !end.overflow, !isoSafe || end.partialValue <= Timestamp.latestISO.millisecondsSince1970 {
                return Period(start: a, end: Timestamp(millisecondsSince1970: end.partialValue))
            }
        }
        return Period(start: a, end: time())  // may be reversed: the format does not care
    }

    mutating func money() -> Money {
        let currency = CurrencyCode(rng.pick(["EUR", "USD", "JPY", "KWD", "GBP", "CLF", "CHF"]))!
        let units: Int64
        switch rng.int(0...9) {
        case 0:
            units = rng.pick(isoSafe ? [Int64.max, Int64.min + 1, 0, -1] : [Int64.min, Int64.max, 0, -1])
        case 1: units = Int64.random(in: (isoSafe ? Int64.min + 1 : Int64.min)...Int64.max, using: &rng)
        default: units = Int64(rng.int(-100_000...1_000_000))
        }
        return Money(minorUnits: units, currency: currency)
    }

    mutating func co2e() -> CO2e {
        if isoSafe {
            return CO2e(
                milligrams: rng.chance(0.1) ? 1_000_000_000_000 : Int64(rng.int(-1_000_000...1_000_000_000)))
        }
        switch rng.int(0...9) {
        case 0: return CO2e(milligrams: rng.pick([Int64.min, Int64.max, 0, -1]))
        default: return CO2e(milligrams: Int64(rng.int(0...1_000_000_000)))
        }
    }

    mutating func answer() -> Answer {
        switch rng.int(0...3) {
        case 0: return .text(string())
        case 1:
            let specials: [Double] = [
                0, -0.0, 1.5, -2.25, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
                .leastNonzeroMagnitude,
                .leastNormalMagnitude, 1e-300, 0.1, 123_456_789.125,
            ]
            return .number(rng.chance(0.5) ? rng.pick(specials) : Double.random(in: -1e9...1e9, using: &rng))
        case 2: return .boolean(rng.chance(0.5))
        default: return .choices((0..<rng.int(0...4)).map { _ in string() })
        }
    }
}
