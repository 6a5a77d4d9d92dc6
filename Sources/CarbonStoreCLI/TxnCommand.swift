import ArgumentParser
import CarbonModel
import CarbonStore

struct TxnCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "txn", abstract: "Record a user's transactions.", subcommands: [Add.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a transaction. Adding the same id again with the same content changes nothing.")

        @OptionGroup var storage: StorageOptions
        @Argument(help: "The user id.") var user: String
        @Option(help: "Transaction id, unique per user (chosen by the client).") var id: String
        // Unconditional, so that a refund's `--amount -5` is read as the value, not as an option.
        @Option(
            parsing: .unconditional, help: "Amount as a decimal, e.g. 12.34 (negative for refunds, e.g. -5).")
        var amount: String
        @Option(help: "Active ISO 4217 currency code, e.g. EUR (its minor unit limits the decimals).")
        var currency: String
        @Option(help: "Merchant name.") var merchant: String?
        @Option(help: "Merchant category code (ISO 18245), 0 to 9999.") var mcc: UInt16?
        @Option(help: "Category.") var category: String?
        @Option(help: "Description.") var description: String?
        @Option(help: "Account id.") var account: String?
        @Option(name: .customLong("meta"), help: "Metadata as key=value (repeatable).") var metadata:
            [String] = []
        @Option(help: "When it happened, ISO 8601 (default: now).") var at: String?
        @Flag(help: "Replace an existing transaction with the same id and different content.") var replace =
            false

        func run() async throws {
            try await runReportingErrors {
                let currency = try parseCurrency(currency)
                let money: Money
                do { money = try Money(decimal: amount, currency: currency) } catch let error as ModelError {
                    throw InvalidRequestError(error.description)
                }
                if let mcc, mcc > 9999 {
                    throw InvalidRequestError("--mcc \(mcc) is not a merchant category code (0 to 9999)")
                }
                var meta = ExactDictionary<String>()
                for item in metadata {
                    guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
                        throw InvalidRequestError("--meta '\(item)' is not key=value")
                    }
                    meta[String(item[..<eq])] = String(item[item.index(after: eq)...])
                }
                guard !id.isEmpty else { throw InvalidRequestError("--id must not be empty") }
                let txn = Transaction(
                    id: id, time: try parseTime(at), amount: money, merchant: merchant, mcc: mcc,
                    category: category,
                    description: description, accountID: account, metadata: meta)
                let store = try await storage.makeStore()
                let result = try await store.update(user) { record in
                    var txn = txn
                    // Without --at, a repeated add of the same id keeps the time first recorded.
                    if at == nil, let existing = record.transaction(id: txn.id) {
                        txn.time = existing.time
                    }
                    return try record.upsert(txn, replace: replace)
                }
                report("transaction \(shown(id)) of \(shown(user))", result.value, result)
            }
        }
    }
}
