// Package usagestore implements usage.Store on PostgreSQL with pgx: minute
// samples in daily partitions, written with CopyFrom into a staging table
// and inserted with ON CONFLICT DO NOTHING so a second write of a key is
// never a double; hourly rollups with correction revisions; watermarks and
// gaps. Storage errors become errcode errors here.
//
// It holds no metering rules: it never decides what a pod costs, which
// hour may close, or who may write.
package usagestore
