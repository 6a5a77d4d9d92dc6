import ArgumentParser
import CarbonServer
import CarbonStore

struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "Make API keys for `carbonstore serve`.", subcommands: [New.self])

    struct New: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a new random key, and the entry (its role and SHA-256) to configure for it.",
            discussion: """
                Give the key to the client, and the entry to the service, in CARBONSTORE_API_KEYS (entries \
                separated by commas) or in the file named by CARBONSTORE_API_KEYS_FILE (one per line). \
                The service keeps only the hash; the key is shown this once.
                """)

        @Option(help: "What the key may do: read, write or admin.") var role: String

        func run() async throws {
            try await runReportingErrors {
                guard let role = Role(rawValue: role) else {
                    throw InvalidRequestError("--role '\(role)' is not a role; use read, write or admin")
                }
                let (key, entry) = APIKeys.newKey(role: role)
                print("key:    \(key)")
                print("entry:  \(entry.entry)")
                print("export CARBONSTORE_API_KEYS='\(entry.entry)'")
            }
        }
    }
}
