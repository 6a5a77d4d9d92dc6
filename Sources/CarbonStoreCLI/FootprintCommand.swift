import ArgumentParser
import CarbonModel
import CarbonStore

struct FootprintCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "footprint", abstract: "Record calculated footprints.", subcommands: [Add.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add or replace (by id) a calculated footprint.")
        @OptionGroup var storage: StorageOptions
        @Argument(help: "The user id.") var user: String
        @Option(help: "Footprint id, unique per user.") var id: String
        @Option(
            parsing: .unconditional,
            help: "Kilograms of CO2e, e.g. 12.345 (negative to correct an earlier one).")
        var kg: String
        @Option(help: "Category, e.g. food.") var category: String
        @Option(help: "Methodology and version label, e.g. spend-v3.") var methodology: String
        @Option(help: "The transaction it belongs to.") var transaction: String?
        @Option(help: "Start of the period it covers, ISO 8601.") var periodStart: String?
        @Option(help: "End of the period it covers, ISO 8601.") var periodEnd: String?
        @Option(help: "When it was calculated, ISO 8601 (default: now).") var at: String?

        func run() async throws {
            try await runReportingErrors {
                let footprint = Footprint(
                    id: id, transactionID: transaction,
                    period: try parsePeriod(start: periodStart, end: periodEnd, required: false),
                    co2e: try parseKilograms(kg), category: category, methodology: methodology,
                    calculatedAt: try parseTime(at))
                let store = try await storage.makeStore()
                let result = try await store.update(user) { record in record.upsert(footprint) }
                report("footprint \(shown(id)) of \(shown(user))", result.value, result)
            }
        }
    }
}
