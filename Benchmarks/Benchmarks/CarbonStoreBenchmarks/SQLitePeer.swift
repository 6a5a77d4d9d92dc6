import BenchmarkSupport
import CarbonModel
import Foundation
import GRDB

/// The peer a team would pick instead of CarbonStore on a volume: one SQLite database per user,
/// through GRDB, in WAL mode with `synchronous=FULL` (every commit fsyncs the WAL, so an
/// acknowledged append survives a power cut, as CarbonStore's does).
///
/// The schema holds the same content as the user's CarbonStore file, in plain tables, one row per
/// item, with the natural keys as primary keys:
///
///     CREATE TABLE user (id TEXT PRIMARY KEY, revision INTEGER NOT NULL,
///         created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)
///     CREATE TABLE transactions (id TEXT PRIMARY KEY, time INTEGER NOT NULL,
///         amount_minor INTEGER NOT NULL, currency TEXT NOT NULL, merchant TEXT, mcc INTEGER,
///         category TEXT, description TEXT, account_id TEXT, metadata TEXT)
///     CREATE INDEX transactions_by_time ON transactions (time, id)
///     CREATE TABLE responses (question_id TEXT PRIMARY KEY, answer TEXT NOT NULL,
///         answered_at INTEGER NOT NULL)
///     CREATE TABLE preferences (key TEXT PRIMARY KEY, value TEXT NOT NULL,
///         updated_at INTEGER NOT NULL)
///     CREATE TABLE footprints (id TEXT PRIMARY KEY, transaction_id TEXT, period_start INTEGER,
///         period_end INTEGER, co2e_mg INTEGER NOT NULL, category TEXT NOT NULL,
///         methodology TEXT NOT NULL, calculated_at INTEGER NOT NULL)
///     CREATE TABLE savings (id TEXT PRIMARY KEY, action_id TEXT NOT NULL,
///         co2e_mg INTEGER NOT NULL, money_minor INTEGER, money_currency TEXT,
///         period_start INTEGER NOT NULL, period_end INTEGER NOT NULL, recorded_at INTEGER NOT NULL)
///
/// Times are milliseconds since 1970, amounts minor units, CO2e milligrams (as in the CarbonStore
/// format); an answer and a transaction's metadata are JSON text (metadata NULL when empty). The
/// index on (time, id) is the order CarbonStore keeps transactions in.
///
/// An append is one write transaction (GRDB's `write`, `BEGIN IMMEDIATE ... COMMIT`): INSERT of
/// the transaction row (which fails on a duplicate id, as `UserRecord.upsert` refuses a
/// conflicting one) and `UPDATE user SET revision = revision + 1, updated_at = ?`, as CarbonStore
/// bumps the revision of every committed write.
struct SQLitePeer: Sendable {
    let pool: DatabasePool
    let path: String

    static let schema = """
        CREATE TABLE user (id TEXT PRIMARY KEY, revision INTEGER NOT NULL,
            created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
        CREATE TABLE transactions (id TEXT PRIMARY KEY, time INTEGER NOT NULL,
            amount_minor INTEGER NOT NULL, currency TEXT NOT NULL, merchant TEXT, mcc INTEGER,
            category TEXT, description TEXT, account_id TEXT, metadata TEXT);
        CREATE INDEX transactions_by_time ON transactions (time, id);
        CREATE TABLE responses (question_id TEXT PRIMARY KEY, answer TEXT NOT NULL,
            answered_at INTEGER NOT NULL);
        CREATE TABLE preferences (key TEXT PRIMARY KEY, value TEXT NOT NULL,
            updated_at INTEGER NOT NULL);
        CREATE TABLE footprints (id TEXT PRIMARY KEY, transaction_id TEXT, period_start INTEGER,
            period_end INTEGER, co2e_mg INTEGER NOT NULL, category TEXT NOT NULL,
            methodology TEXT NOT NULL, calculated_at INTEGER NOT NULL);
        CREATE TABLE savings (id TEXT PRIMARY KEY, action_id TEXT NOT NULL,
            co2e_mg INTEGER NOT NULL, money_minor INTEGER, money_currency TEXT,
            period_start INTEGER NOT NULL, period_end INTEGER NOT NULL, recorded_at INTEGER NOT NULL);
        """

    /// A new database at `path` holding `record`, in WAL mode with `synchronous=FULL` (both
    /// checked), its WAL checkpointed and truncated so that WAL growth can be read per append.
    static func create(path: String, userID: String, record: UserRecord) throws -> SQLitePeer {
        var config = Configuration()
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        let pool = try DatabasePool(path: path, configuration: config)
        let json = JSONEncoder()
        json.outputFormatting = .sortedKeys
        try pool.write { db in
            try db.execute(sql: schema)
            try db.execute(
                sql: "INSERT INTO user VALUES (?, ?, ?, ?)",
                arguments: [
                    userID, Int64(record.revision), record.createdAt.millisecondsSince1970,
                    record.updatedAt.millisecondsSince1970,
                ])
            for t in record.transactions { try insert(t, into: db) }
            let response = try db.makeStatement(sql: "INSERT INTO responses VALUES (?, ?, ?)")
            for r in record.responses {
                let answer = String(decoding: try json.encode(r.answer), as: UTF8.self)
                try response.execute(arguments: [r.questionID, answer, r.answeredAt.millisecondsSince1970])
            }
            let preference = try db.makeStatement(sql: "INSERT INTO preferences VALUES (?, ?, ?)")
            for (key, p) in record.preferences {
                try preference.execute(arguments: [key, p.value, p.updatedAt.millisecondsSince1970])
            }
            let footprint = try db.makeStatement(
                sql: "INSERT INTO footprints VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            for f in record.footprints {
                try footprint.execute(arguments: [
                    f.id, f.transactionID, f.period?.start.millisecondsSince1970,
                    f.period?.end.millisecondsSince1970, f.co2e.milligrams, f.category, f.methodology,
                    f.calculatedAt.millisecondsSince1970,
                ])
            }
            let saving = try db.makeStatement(sql: "INSERT INTO savings VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            for s in record.savings {
                try saving.execute(arguments: [
                    s.id, s.actionID, s.co2e.milligrams, s.moneySaved?.minorUnits,
                    s.moneySaved?.currency.code,
                    s.period.start.millisecondsSince1970, s.period.end.millisecondsSince1970,
                    s.recordedAt.millisecondsSince1970,
                ])
            }
        }
        // Checked on the connection that writes: a pool opens its writer in WAL mode with
        // `synchronous=NORMAL` after `prepareDatabase` has run, so that the setting read on a reader
        // connection says nothing of the commits (with NORMAL, a commit does not sync the WAL).
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        let (mode, synchronous) = try pool.writeWithoutTransaction { db in
            (
                try String.fetchOne(db, sql: "PRAGMA journal_mode"),
                try Int.fetchOne(db, sql: "PRAGMA synchronous")
            )
        }
        let count = try pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM transactions") }
        precondition(mode == "wal", "journal_mode is \(mode ?? "nil"), not wal")
        precondition(synchronous == 2, "synchronous of the writer is \(synchronous ?? -1), not 2 (FULL)")
        precondition(count == record.transactions.count, "seeded \(count ?? -1) transactions")
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
        }
        return SQLitePeer(pool: pool, path: path)
    }

    private static func insert(_ t: Transaction, into db: Database) throws {
        var metadata: String?
        if !t.metadata.isEmpty {
            let pairs = Dictionary(t.metadata.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            let data = try JSONSerialization.data(withJSONObject: pairs, options: [.sortedKeys])
            metadata = String(decoding: data, as: UTF8.self)
        }
        // A cached (prepared once) statement, as a tuned application would use.
        try db.cachedStatement(sql: "INSERT INTO transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").execute(
            arguments: [
                t.id, t.time.millisecondsSince1970, t.amount.minorUnits, t.amount.currency.code, t.merchant,
                t.mcc.map { Int($0) }, t.category, t.description, t.accountID, metadata,
            ])
    }

    /// Appends `t` durably: one write transaction, committed (WAL fsynced) before it returns.
    func append(_ t: Transaction, userID: String, now: Timestamp) throws {
        try pool.write { db in
            try Self.insert(t, into: db)
            try db.cachedStatement(
                sql: "UPDATE user SET revision = revision + 1, updated_at = ? WHERE id = ?"
            )
            .execute(arguments: [now.millisecondsSince1970, userID])
        }
    }

    /// The size of the WAL file now (0 if there is none), asked for without its time stamps, as
    /// the engine's file is (`Fixtures.fileSize`).
    func walSize() -> Int {
        Fixtures.fileSize(path + "-wal")
    }

    /// The size of the database file (without its WAL).
    func databaseSize() -> Int {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        return (attributes?[.size] as? NSNumber)?.intValue ?? 0
    }
}
