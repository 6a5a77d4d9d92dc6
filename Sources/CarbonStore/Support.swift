/// Small helpers the engine's files share: one copy of each (hex formatting is CarbonFormat's).

extension Duration {
    /// Whole nanoseconds, saturating at Int64.max.
    package var nanoseconds: Int64 {
        let (s, a) = components
        let (ns, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? (s < 0 ? Int64.min : Int64.max) : ns + a / 1_000_000_000
    }

    /// Whole milliseconds, saturating.
    package var milliseconds: Int64 { nanoseconds / 1_000_000 }
}
