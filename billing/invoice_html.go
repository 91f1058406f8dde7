package billing

import (
	"bytes"
	"fmt"
	"html/template"
	"time"
)

// InvoiceDocument is what an invoice's rendering shows besides the
// invoice: who it is for.
type InvoiceDocument struct {
	Invoice Invoice
	// OrgName is the org's name; OrgDisplayName its display name, if any.
	OrgName        string
	OrgDisplayName string
	// Issuer is the platform's name printed at the top.
	Issuer string
}

var invoiceTemplate = template.Must(template.New("invoice").Funcs(template.FuncMap{
	"money": func(m Micros, currency string) string { return FormatMicros(m) + " " + currency },
	"date":  func(t time.Time) string { return t.UTC().Format(time.DateOnly) },
	"last":  func(t time.Time) string { return t.UTC().Add(-time.Nanosecond).Format(time.DateOnly) },
	"bps":   func(b int64) string { return fmt.Sprintf("%d.%02d%%", b/100, b%100) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 0.3em 0.6em; border-bottom: 1px solid #ddd; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tfoot td { font-weight: bold; }
</style>
</head>
<body>
<h1>{{.Kind}}{{with .Invoice.DisplayNumber}} {{.}}{{end}}</h1>
<p>{{.Issuer}}</p>
<dl>
<dt>Billed to</dt><dd>{{if .OrgDisplayName}}{{.OrgDisplayName}} ({{.OrgName}}){{else}}{{.OrgName}}{{end}}</dd>
<dt>Period</dt><dd>{{date .Invoice.PeriodStart}} to {{last .Invoice.PeriodEnd}} (UTC)</dd>
<dt>Status</dt><dd>{{.Invoice.Status}}</dd>
{{with .Invoice.FinalizedAt}}<dt>Issued</dt><dd>{{date .}}</dd>{{end}}
{{with .Invoice.PaidAt}}<dt>Paid</dt><dd>{{date .}}</dd>{{end}}
{{with .Invoice.VoidedAt}}<dt>Void</dt><dd>{{date .}}{{with $.Invoice.VoidReason}}: {{.}}{{end}}</dd>{{end}}
</dl>
<table>
<thead><tr><th>Namespace</th><th>Resource</th><th class="num">Quantity</th><th class="num">Amount</th></tr></thead>
<tbody>
{{range .Invoice.Lines}}<tr><td>{{.Namespace}}</td><td>{{.Resource}}</td><td class="num">{{.Quantity}}</td><td class="num">{{money .Amount $.Invoice.Currency}}</td></tr>
{{else}}<tr><td colspan="4">No charges in this period.</td></tr>
{{end}}</tbody>
<tfoot>
<tr><td colspan="3">Subtotal</td><td class="num">{{money .Invoice.Subtotal .Invoice.Currency}}</td></tr>
<tr><td colspan="3">Tax ({{bps .Invoice.TaxRateBPS}})</td><td class="num">{{money .Invoice.Tax .Invoice.Currency}}</td></tr>
<tr><td colspan="3">Total</td><td class="num">{{money .Invoice.Total .Invoice.Currency}}</td></tr>
</tfoot>
</table>
{{if .Prepaid}}<p>This is a statement: the charges were paid from the prepaid balance as they were rated.</p>{{end}}
</body>
</html>
`))

// RenderInvoiceHTML writes d as a standalone HTML page; every value is
// escaped by html/template.
func RenderInvoiceHTML(d InvoiceDocument) ([]byte, error) {
	kind := "Invoice"
	if d.Invoice.BillingMode == Prepaid {
		kind = "Statement"
	}
	title := kind
	if n := d.Invoice.DisplayNumber(); n != "" {
		title += " " + n
	} else {
		title += " (draft)"
	}
	var b bytes.Buffer
	err := invoiceTemplate.Execute(&b, struct {
		InvoiceDocument
		Kind, Title string
		Prepaid     bool
	}{d, kind, title, d.Invoice.BillingMode == Prepaid})
	if err != nil {
		return nil, fmt.Errorf("rendering invoice %d: %w", d.Invoice.ID, err)
	}
	return b.Bytes(), nil
}
