import ArgumentParser
import CarbonFormat
import CarbonModel
import CarbonStore

struct UserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user", abstract: "Show, delete and list users.",
        subcommands: [Show.self, Delete.self, List.self])

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a user's record.")
        @OptionGroup var storage: StorageOptions
        @Argument(help: "The user id.") var user: String
        @Flag(help: "Print the whole record as JSON.") var json = false

        func run() async throws {
            try await runReportingErrors {
                let store = try await storage.makeStore {
                    $0.readOnly = true
                    $0.events.damagedTail = { _, location, offset, length in
                        // `file verify` reads files on this host: an object elsewhere is copied first.
                        let look =
                            location.hasPrefix("/")
                            ? "see 'carbonstore file verify \(location)'"
                            : "copy the object and run 'carbonstore file verify' on the copy"
                        printError(
                            "warning: \(location) has \(length) bytes after offset \(offset) that are \(IgnoredTail.damageExplanation); the record shown is the one before them (\(look))"
                        )
                    }
                }
                let record = try await store.get(user)
                if json {
                    print(try RecordJSON.encode(record))
                } else {
                    print(summary(record))
                }
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a user and all their data.")
        @OptionGroup var storage: StorageOptions
        @Argument(help: "The user id.") var user: String

        func run() async throws {
            try await runReportingErrors {
                let store = try await storage.makeStore()
                switch try await store.delete(user) {
                case .deleted:
                    print("deleted user \(shown(user))")
                case .goneAfterRetry:
                    // The first attempt's answer was lost: it, or another writer, deleted the user.
                    print(
                        "user \(shown(user)) is deleted (by an earlier attempt of this request whose answer was lost, or by another writer)"
                    )
                case .notFound:
                    throw UserNotFoundError(userID: user)
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "List user ids, one per line, in storage order (streamed page by page). Control characters, line separators, bidirectional formatting characters and backslashes in ids are shown escaped, as \\u{1B} and \\\\."
        )
        @OptionGroup var storage: StorageOptions
        @Option(help: "Stop after this many ids.") var limit: Int?

        func run() async throws {
            try await runReportingErrors {
                let store = try await storage.makeStore { $0.readOnly = true }
                var count = 0
                for try await id in store.allUsers() {
                    if let limit, count >= limit { break }
                    print(shown(id))
                    count += 1
                }
            }
        }
    }
}

/// A few lines describing a record. Ids are escaped (`shown`); totals are summed in 128 bits, so
/// no number of amounts, however large, can wrap around.
func summary(_ r: UserRecord) -> String {
    var lines = [
        "user \(shown(r.userID))",
        "  revision \(r.revision), created \(r.createdAt), updated \(r.updatedAt)",
        "  \(r.transactions.count) transactions, \(r.responses.count) responses, \(r.preferences.count) preferences, \(r.footprints.count) footprints, \(r.savings.count) savings",
    ]
    var totals: [CurrencyCode: Int128] = [:]
    for t in r.transactions { totals[t.amount.currency, default: 0] += Int128(t.amount.minorUnits) }
    for (currency, units) in totals.sorted(by: { $0.key < $1.key }) {
        lines.append(
            "  spent \(DecimalText.format(wide: units, fractionDigits: currency.minorUnitDigits)) \(currency)"
        )
    }
    let footprint = r.footprints.reduce(Int128(0)) { $0 + Int128($1.co2e.milligrams) }
    let saved = r.savings.reduce(Int128(0)) { $0 + Int128($1.co2e.milligrams) }
    if !r.footprints.isEmpty { lines.append("  footprint \(CO2e.kilograms(milligrams: footprint)) kg CO2e") }
    if !r.savings.isEmpty { lines.append("  saved \(CO2e.kilograms(milligrams: saved)) kg CO2e") }
    if !r.preservedSections.isEmpty {
        lines.append("  \(r.preservedSections.count) sections from a newer version, kept unchanged")
    }
    return lines.joined(separator: "\n")
}
