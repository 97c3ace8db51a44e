package schemas

import (
	"strconv"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
)

// Arrow metadata keys carried on every field and on the schema, so a consumer reading
// a batch knows what it holds without asking the catalog.
const (
	MetaSensitivity = "govx.sensitivity"
	MetaMask        = "govx.mask" // the default mask (schema) or the mask applied (pulls)
	MetaTitleZh     = "govx.title.zh"
	MetaTitleEn     = "govx.title.en"
	MetaKey         = "govx.key" // "true" on primary-key fields
	MetaDataset     = "govx.dataset"
	MetaVersion     = "govx.schema_version"
)

// ArrowType returns the Arrow type of the field's unmasked values.
func (f *Field) ArrowType() arrow.DataType {
	switch f.kind {
	case KindInt64:
		return arrow.PrimitiveTypes.Int64
	case KindFloat64:
		return arrow.PrimitiveTypes.Float64
	case KindDecimal:
		return &arrow.Decimal128Type{Precision: int32(f.precision), Scale: int32(f.scale)}
	case KindDate:
		return arrow.FixedWidthTypes.Date32
	case KindTimestamp:
		return &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	case KindBool:
		return arrow.FixedWidthTypes.Boolean
	}
	return arrow.BinaryTypes.String
}

// ArrowField returns the field as an Arrow field with its metadata.
func (d *Dataset) ArrowField(f *Field) arrow.Field {
	return arrow.Field{
		Name:     f.Name,
		Type:     f.ArrowType(),
		Nullable: f.Nullable,
		Metadata: arrow.NewMetadata(
			[]string{MetaSensitivity, MetaMask, MetaTitleZh, MetaTitleEn, MetaKey},
			[]string{string(f.Sensitivity), f.Mask, f.Title.Zh, f.Title.En, strconv.FormatBool(d.IsKey(f.Name))},
		),
	}
}

// ArrowSchema returns the dataset's full, unmasked Arrow schema.
func (d *Dataset) ArrowSchema() *arrow.Schema {
	fields := make([]arrow.Field, len(d.Fields))
	for i := range d.Fields {
		fields[i] = d.ArrowField(&d.Fields[i])
	}
	md := arrow.NewMetadata(
		[]string{MetaDataset, MetaVersion, MetaKey},
		[]string{d.ID, strconv.Itoa(d.Version), strings.Join(d.Key, ",")},
	)
	return arrow.NewSchema(fields, &md)
}
