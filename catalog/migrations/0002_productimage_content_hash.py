"""Every photo has a non-empty content hash.

Rows written around Model.save() (bulk_create, loaddata) could have an empty one, and every such photo was then
treated as one content with one vector. They get a unique placeholder (``unhashed:<pk>``) rather than their hash:
a migration must not depend on the media storage being mounted, nor read a whole catalog's files at deploy time.
They are left pending; the next ``reindex`` (or ``reindex --missing``) hashes their files before embedding them,
and replaces the wrong vector they may be indexed under.
"""
from django.db import migrations, models
from django.db.models.functions import Cast, Concat

import catalog.models


def replace_empty_hashes(apps, schema_editor):
    ProductImage = apps.get_model("catalog", "ProductImage")
    ProductImage.objects.filter(sha256="").update(
        sha256=Concat(models.Value("unhashed:"), Cast("pk", models.CharField())),
        index_status="pending",
        index_error="No content hash: the next reindex hashes and embeds this photo.",
        indexed_at=None,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(replace_empty_hashes, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="productimage",
            name="image",
            field=catalog.models.ContentImageField(
                hash_field="sha256",
                height_field="height",
                max_length=500,
                upload_to=catalog.models.product_image_path,
                width_field="width",
            ),
        ),
        migrations.AddConstraint(
            model_name="productimage",
            constraint=models.CheckConstraint(
                condition=models.Q(("sha256", ""), _negated=True), name="productimage_sha256_not_empty"
            ),
        ),
    ]
