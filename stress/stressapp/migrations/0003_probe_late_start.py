from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("stressapp", "0002_probe_time_from_the_database"),
    ]

    operations = [
        migrations.AlterField(
            model_name="probeevent",
            name="kind",
            field=models.CharField(
                choices=[
                    ("attempt", "schedule called"),
                    ("schedule_failed", "schedule_failed received"),
                    ("terminated", "execution_terminated received"),
                    ("cut_short", "terminated while its receiver worked"),
                    ("late_start", "receiver started for an ended execution"),
                ],
                max_length=32,
            ),
        ),
    ]
