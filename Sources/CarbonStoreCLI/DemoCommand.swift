import ArgumentParser
import CarbonModel
import CarbonStore

/// Stores a sample user on the configured storage (the embedded default unless told otherwise),
/// updates it from several tasks at once, reads it back and verifies every file.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Store, update and read back a sample user; safe to run again (adds are idempotent).")
    @OptionGroup var storage: StorageOptions
    @Option(help: "The sample user's id.") var user = "demo-user"

    func run() async throws {
        try await runReportingErrors {
            let store = try await storage.makeStore()
            print("storage: \(storage.uriText)")
            let eur = CurrencyCode("EUR")!
            let merchants = [
                ("Green Grocer", UInt16(5411), "groceries"), ("City Metro", 4111, "transport"),
                ("Sunny Airlines", 4511, "flights"), ("Power & Light", 4900, "utilities"),
            ]
            let start = Timestamp(iso8601: "2026-01-05T09:00:00Z")!
            // Twelve months of transactions, written by four concurrent tasks.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        for month in stride(from: worker, to: 12, by: 4) {
                            let (name, mcc, category) = merchants[month % merchants.count]
                            let txn = Transaction(
                                id: "demo-\(month + 1)",
                                time: Timestamp(
                                    millisecondsSince1970: start.millisecondsSince1970 + Int64(month) * 30
                                        * 86_400_000),
                                amount: Money(minorUnits: Int64(1_250 + month * 731), currency: eur),
                                merchant: name, mcc: mcc,
                                category: category)
                            let footprint = Footprint(
                                id: "fp-demo-\(month + 1)", transactionID: txn.id,
                                co2e: CO2e(milligrams: Int64(2_500_000 + month * 411_000)),
                                category: category,
                                methodology: "spend-based-v1", calculatedAt: txn.time)
                            try await store.update(user) { record in
                                try record.upsert(txn)
                                record.upsert(footprint)
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            try await store.update(user) { record in
                record.answer(
                    QuestionResponse(questionID: "diet", answer: .text("vegetarian"), answeredAt: start))
                record.answer(
                    QuestionResponse(questionID: "car-km-per-week", answer: .number(40), answeredAt: start))
                record.setPreference("units", value: "metric", at: start)
                record.upsert(
                    Saving(
                        id: "bike-2026-q1", actionID: "bike-to-work", co2e: CO2e(milligrams: 18_000_000),
                        moneySaved: Money(minorUnits: 4_200, currency: eur),
                        period: Period(start: start, end: Timestamp(iso8601: "2026-04-01T00:00:00Z")!),
                        recordedAt: start))
            }
            let record = try await store.get(user)
            print(summary(record))
            print("stored at \(store.storage.location(of: try store.keys.key(for: user)))")
            let report = try await store.verify()
            print(
                "verify: \(report.healthy) healthy, \(report.damaged.count) damaged user files"
                    + (report.unreadable.isEmpty ? "" : ", \(report.unreadable.count) unreadable"))
            for p in report.unreadable { printError("unreadable: \(p.location): \(p.reason)") }
            if let code = report.failureExitCode { throw ExitCode(code) }
        }
    }
}
