import ArgumentParser
import CarbonModel
import CarbonStore

struct PrefCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pref", abstract: "Set or remove a user's account preferences.",
        subcommands: [Set.self, Unset.self])

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set a preference.")
        @OptionGroup var storage: StorageOptions
        @Argument(help: "The user id.") var user: String
        @Argument(help: "The preference key.") var key: String
        @Argument(help: "The value (after --, if it starts with a dash).") var value: String

        func run() async throws {
            try await runReportingErrors {
                let store = try await storage.makeStore()
                let now = Timestamp.now()
                let result = try await store.update(user) { record in
                    record.setPreference(key, value: value, at: now)
                }
                report("preference \(shown(key)) of \(shown(user))", result.value, result)
            }
        }
    }

    struct Unset: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a preference.")
        @OptionGroup var storage: StorageOptions
        @Argument(help: "The user id.") var user: String
        @Argument(help: "The preference key.") var key: String

        func run() async throws {
            try await runReportingErrors {
                let store = try await storage.makeStore()
                let result = try await store.update(user) { record in record.removePreference(key) }
                if result.value {
                    print(
                        "removed preference \(shown(key)) of \(shown(user)) (revision \(result.record.revision))"
                    )
                } else if result.outcome == .asRequestedAfterRetry {
                    print("preference \(shown(key)) of \(shown(user)) is removed; \(madeByEarlierAttempt)")
                } else {
                    print("user \(shown(user)) has no preference \(shown(key)), nothing changed")
                }
            }
        }
    }
}
