from dashboard.components import coming_soon

coming_soon("Distill", "Train a student you choose from a teacher run, and compare it honestly with the same "
            "student trained without the teacher, over several seeds.")
